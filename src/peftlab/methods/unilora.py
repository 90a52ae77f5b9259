"""unilora: one vector is all you need (Uni-LoRA, arXiv:2506.00799).

Every LoRA matrix entry of every layer is a (fixed, random) projection of one small shared vector
theta_d: the whole adapter trains `theta_d_length` numbers.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class UniLoraOptions(TargetOptions):
    r: int = Field(4, gt=0, description="Rank of the LoRA matrices projected from the shared vector.")
    theta_d_length: int = Field(256, gt=0, description="Trained parameters in all (the shared vector's length).")
    init_bound: float = Field(0.02, gt=0, description="theta_d starts uniform in [-bound, bound].")
    proj_seed: int = Field(42, description="Seed of the fixed projection.")


def apply(model: Any, opts: UniLoraOptions, ctx: MethodContext) -> Any:
    # save_indices: the adapter carries its projection, so it does not depend on peft regenerating it
    return apply_peft(model, opts, ctx, "UniLoraConfig", r=opts.r, theta_d_length=opts.theta_d_length,
                      init_theta_d_bound=opts.init_bound, proj_seed=opts.proj_seed, save_indices=True)


METHOD = Method(
    name="unilora",
    summary="One small shared vector projected into every layer's LoRA matrices.",
    options=UniLoraOptions,
    # peft's method_comparison (MetaMathQA) ran it at LoRA's 1e-4 and it did not learn (0.2% vs LoRA's
    # 48%): a few hundred shared parameters need a VeRA-like rate. 5e-3 is unmeasured, to be tuned.
    learning_rates=rates(5e-3),
    apply=apply,
    family="shared-basis",
    mergeable=True,
)
