"""tinylora: learning to reason in 13 parameters (arXiv:2602.04118), after LoRA-XS.

The frozen weight's top-r singular vectors U, V and a tiny trained vector v projected through fixed
random tensors: ΔW = U Σ R(v) V^T. As few as u parameters per layer (or in all, with weight tying).
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions, refuse_unless


class TinyLoraOptions(TargetOptions):
    r: int = Field(2, gt=0, description="Rank of the frozen SVD basis (the paper's 2).")
    u: int = Field(64, gt=0, description="Trained parameters per layer (per group with weight tying).")
    weight_tying: float = Field(0.0, ge=0, le=1, description="Share of layers sharing one vector (1: one in all).")
    projection_seed: int = Field(42, description="Seed of the fixed random projections.")


def apply(model: Any, opts: TinyLoraOptions, ctx: MethodContext) -> Any:
    def check(layers: list) -> None:
        refuse_unless("tinylora", layers, lambda i, o: opts.r <= min(i, o), f"r={opts.r} exceeds a layer's width")

    return apply_peft(model, opts, ctx, "TinyLoraConfig", check=check, r=opts.r, u=opts.u,
                      weight_tying=opts.weight_tying, projection_seed=opts.projection_seed, save_projection=True)


METHOD = Method(
    name="tinylora",
    summary="A tiny trained vector through fixed random projections of the weight's SVD.",
    options=TinyLoraOptions,
    # peft's method_comparison (MetaMathQA): tinylora at 1e-3 (it barely learned there: the paper's
    # few-parameter results come from reinforcement learning, not supervised fine-tuning).
    learning_rates=rates(1e-3),
    apply=apply,
    family="shared-basis",
    mergeable=True,
)
