"""vera: vector-based random matrix adaptation (arXiv:2310.11454).

One pair of frozen random matrices shared by every layer; each layer trains only two scaling
vectors, ΔW = diag(b) B diag(d) A. Far fewer parameters than LoRA, so the rank is set high.
The random projections are saved with the adapter, so it reloads anywhere.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class VeraOptions(TargetOptions):
    r: int = Field(256, gt=0, description="Rank of the shared random matrices (peft's and the paper's default).")
    d_initial: float = Field(0.1, gt=0, description="Start of the d vector; the paper recommends <= 0.1.")
    dropout: float = Field(0.0, ge=0, lt=1)
    projection_prng_key: int = Field(0, description="Seed of the shared random matrices.")


def apply(model: Any, opts: VeraOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "VeraConfig", r=opts.r, d_initial=opts.d_initial, vera_dropout=opts.dropout,
                      projection_prng_key=opts.projection_prng_key, save_projection=True)


METHOD = Method(
    name="vera",
    summary="Shared frozen random low-rank matrices, per-layer scaling vectors.",
    options=VeraOptions,
    # generation: peft's method_comparison (MetaMathQA) 1e-3; classification and images: the VeRA
    # paper trains its vectors at 4e-3 to 1e-2 on GLUE and ViT, far above LoRA.
    learning_rates=rates(1e-3, 4e-3, 4e-3),
    apply=apply,
    family="shared-basis",
    mergeable=True,
)
