"""randlora: full-rank updates from random bases (arXiv:2502.00987).

Like VeRA, frozen random bases shared across layers with trained diagonal scalings, but enough
low-rank bases that their sum reaches full rank. Fewer trainable parameters as `r` grows (there are
fewer, larger bases). Has a bitsandbytes layer, so `quantize: 4bit` works.
"""

from typing import Any

from pydantic import Field

from peftlab.methods import quantize
from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class RandLoraOptions(quantize.QuantizeOptions, TargetOptions):
    r: int = Field(32, gt=0, description="Rank of each random basis; larger r = fewer bases = fewer parameters.")
    alpha: float = Field(640, gt=0, description="Scale; peft's default, 20 x r as the paper suggests.")
    sparse: bool = Field(False, description="Ternary sparse bases (-1, 0, 1); can reduce overfitting.")
    dropout: float = Field(0.0, ge=0, lt=1)
    projection_prng_key: int = Field(0, description="Seed of the random bases.")


def apply(model: Any, opts: RandLoraOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "RandLoraConfig", r=opts.r, randlora_alpha=opts.alpha, sparse=opts.sparse,
                      randlora_dropout=opts.dropout, projection_prng_key=opts.projection_prng_key,
                      save_projection=True)


METHOD = Method(
    name="randlora",
    summary="Full-rank update from shared random bases with trained scalings.",
    options=RandLoraOptions,
    # peft's method_comparison (MetaMathQA) trains RandLoRA at LoRA's rate: LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    load_kwargs=quantize.load_kwargs,
    family="shared-basis",
    mergeable=True,
    quantizable=True,
)
