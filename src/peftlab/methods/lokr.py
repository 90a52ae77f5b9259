"""lokr: low-rank Kronecker product (LyCORIS, arXiv:2309.14859).

ΔW = C ⊗ (B A): a small full matrix Kronecker-multiplied with a low-rank one, so the update keeps a
high rank for very few parameters. Layer widths are factored automatically (`decompose_factor: -1`),
which fits every width.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class LokrOptions(TargetOptions):
    r: int = Field(8, gt=0, description="Rank of the low-rank Kronecker factor.")
    alpha: int = Field(16, gt=0, description="Scale alpha/r = 2, LoRA's default scale.")
    decompose_factor: int = Field(-1, description="Kronecker factor size; -1 factors each width as evenly as it can.")
    decompose_both: bool = Field(False, description="Make the small factor low-rank too.")
    rank_dropout: float = Field(0.0, ge=0, lt=1)
    module_dropout: float = Field(0.0, ge=0, lt=1)


def apply(model: Any, opts: LokrOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "LoKrConfig", r=opts.r, alpha=opts.alpha, decompose_factor=opts.decompose_factor,
                      decompose_both=opts.decompose_both, rank_dropout=opts.rank_dropout,
                      module_dropout=opts.module_dropout)


METHOD = Method(
    name="lokr",
    summary="Kronecker product of a small matrix and a low-rank one (LyCORIS).",
    options=LokrOptions,
    # peft's method_comparison (MetaMathQA, Llama-3.2-3B): lokr-rank32-factor4 at 3e-3.
    learning_rates=rates(3e-3),
    apply=apply,
    mergeable=True,
)
