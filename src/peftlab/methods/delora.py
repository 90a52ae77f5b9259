"""delora: decoupled low-rank adaptation (arXiv:2503.18225).

LoRA's B A normalised and scaled by a learned bound lambda·||W||: the update's direction and its
(Frobenius-bounded) size are learned apart, which keeps the model from drifting far and makes it
less sensitive to the learning rate.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class DeloraOptions(TargetOptions):
    r: int = Field(8, gt=0, description="Rank (peft's default).")
    delora_lambda: float = Field(15, gt=0, description="Initial bound on the update's norm (peft's default).")
    module_dropout: float = Field(0.0, ge=0, lt=1)


def apply(model: Any, opts: DeloraOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "DeloraConfig", r=opts.r, delora_lambda=opts.delora_lambda,
                      module_dropout=opts.module_dropout)


METHOD = Method(
    name="delora",
    summary="LoRA with the update's direction and bounded norm learned apart.",
    options=DeloraOptions,
    # peft's method_comparison (MetaMathQA): delora-rank32 at 1e-3; peft's docs: 10-100x LoRA's rate.
    learning_rates=rates(1e-3),
    apply=apply,
    mergeable=True,
)
