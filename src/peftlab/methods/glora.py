"""glora: generalized LoRA (arXiv:2306.07967).

W' = W0 + W0 ⊙ A + B and b' = b0 + b0 ⊙ D + E + W0 C: a scaling path, a shift path and a bias
path, each low-rank ("lora"), a vector, a constant or off.
"""

from typing import Any, Literal

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class GloraOptions(TargetOptions):
    r: int = Field(8, gt=0, description="Rank of the paths set to 'lora' (peft's default).")
    config_A_B: Literal["lora", "vector", "constant", "none"] = Field("lora", description="Weight scale and shift.")
    config_C: Literal["lora", "vector", "none"] = Field("lora", description="Weight-to-bias path.")
    config_D_E: Literal["vector", "constant", "none"] = Field("constant", description="Bias scale and shift.")


def apply(model: Any, opts: GloraOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "GloraConfig", r=opts.r, config_A_B=opts.config_A_B, config_C=opts.config_C,
                      config_D_E=opts.config_D_E)


METHOD = Method(
    name="glora",
    summary="Generalized LoRA: low-rank, vector or scalar scale, shift and bias paths.",
    options=GloraOptions,
    # peft's method_comparison (MetaMathQA) runs the default GLoRA at LoRA's rate: LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
)
