"""loha: low-rank Hadamard product (FedPara, arXiv:2108.06098; LyCORIS, arXiv:2309.14859).

ΔW = (B1 A1) ⊙ (B2 A2): two rank-r pairs multiplied element-wise, so the update can reach rank r²
for twice LoRA's parameters at the same r.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class LohaOptions(TargetOptions):
    r: int = Field(8, gt=0, description="Rank of each factor pair (the update can reach r^2).")
    alpha: int = Field(16, gt=0, description="Scale alpha/r = 2, LoRA's default scale.")
    rank_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout over the rank dimension while training.")
    module_dropout: float = Field(0.0, ge=0, lt=1, description="Chance of skipping a whole adapter in a step.")


def apply(model: Any, opts: LohaOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "LoHaConfig", r=opts.r, alpha=opts.alpha, rank_dropout=opts.rank_dropout,
                      module_dropout=opts.module_dropout)


METHOD = Method(
    name="loha",
    summary="Hadamard product of two low-rank updates (LyCORIS).",
    options=LohaOptions,
    # peft's method_comparison (MetaMathQA) trains LoHa at LoRA's rate: LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
)
