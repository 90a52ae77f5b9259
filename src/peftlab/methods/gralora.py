"""gralora: granular low-rank adaptation (arXiv:2505.20355).

The weight is split into k x k blocks, each with its own rank-r/k LoRA: LoRA's parameter count at
rank r, k times its expressivity, and robust to outlier channels. Both widths of every adapted
layer must be divisible by k.
"""

from typing import Any

from pydantic import Field, model_validator

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions, refuse_unless


class GraloraOptions(TargetOptions):
    r: int = Field(32, gt=0, description="Total rank (LoRA's parameters at this rank); divisible by k.")
    alpha: int = Field(64, gt=0, description="Scale alpha/r = 2, LoRA's default scale.")
    k: int = Field(2, gt=0, description="Blocks per side; peft recommends 2 up to rank 32, 4 from rank 64.")
    hybrid_r: int = Field(0, ge=0, description="Extra rank given to a plain LoRA beside the blocks.")
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _r_divides(self) -> "GraloraOptions":
        if self.r % self.k:
            raise ValueError(f"r={self.r} must be divisible by k={self.k}")
        return self


def apply(model: Any, opts: GraloraOptions, ctx: MethodContext) -> Any:
    def check(layers: list) -> None:
        refuse_unless("gralora", layers, lambda i, o: i % opts.k == 0 and o % opts.k == 0,
                      f"both widths of each layer must be divisible by k={opts.k}")

    return apply_peft(model, opts, ctx, "GraloraConfig", check=check, r=opts.r, alpha=opts.alpha,
                      gralora_k=opts.k, hybrid_r=opts.hybrid_r, gralora_dropout=opts.dropout)


METHOD = Method(
    name="gralora",
    summary="Block-wise LoRA: k x k sub-blocks, each with its own low-rank update.",
    options=GraloraOptions,
    # peft's method_comparison (MetaMathQA): gralora-rank32 at 2e-4, LoRA's generation rate here.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
)
