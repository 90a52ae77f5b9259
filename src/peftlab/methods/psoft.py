"""psoft: orthogonal fine-tuning in the principal subspace (PSOFT, arXiv:2505.11235).

A and B span the weight's top-r singular subspace (frozen); an r x r orthogonal R between them
trains (Cayley parametrisation), with optional scaling vectors: ΔW = B (R - I) A. OFT's geometry
preservation at LoRA-like cost. r must not exceed any adapted layer's width.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions, refuse_unless


class PsoftOptions(TargetOptions):
    r: int = Field(32, gt=0, description="Size of the principal subspace and of R (peft's default).")
    alpha: int = Field(32, gt=0, description="Scale alpha/r, as LoRA's.")
    orthogonal: bool = Field(True, description="Keep R orthogonal (Cayley); False: a free r x r matrix.")
    magnitudes: bool = Field(True, description="Learn scaling vectors on both sides of R.")
    dropout: float = Field(0.0, ge=0, lt=1)


def apply(model: Any, opts: PsoftOptions, ctx: MethodContext) -> Any:
    def check(layers: list) -> None:
        refuse_unless("psoft", layers, lambda i, o: opts.r <= min(i, o), f"r={opts.r} exceeds a layer's width")

    return apply_peft(model, opts, ctx, "PsoftConfig", check=check, r=opts.r, psoft_alpha=opts.alpha,
                      psoft_orth=opts.orthogonal, psoft_mag_a=opts.magnitudes, psoft_mag_b=opts.magnitudes,
                      psoft_dropout=opts.dropout)


METHOD = Method(
    name="psoft",
    summary="Orthogonal r x r transform inside the weight's principal subspace.",
    options=PsoftOptions,
    # generation and images: peft's PSOFT guide trains at 5e-4; classification: LoRA's rate (the head).
    learning_rates=rates(5e-4, 2e-3, 5e-4),
    apply=apply,
    family="orthogonal",
    mergeable=True,
)
