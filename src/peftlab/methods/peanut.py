"""peanut: parameter-efficient adaptation with weight-aware neural tweakers (arXiv:2410.01870).

The update is computed from the frozen weight itself by a small non-linear network (A, optional
hidden layers, B): ΔW = f(W0), richer than a linear low-rank product for the same rank.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class PeanutOptions(TargetOptions):
    r: int = Field(32, gt=0, description="Hidden width of the tweaker network (peft's default).")
    depth: int = Field(0, ge=0, description="Hidden layers on each side (0: A and B only).")
    act_fn: str = Field("relu", description="Activation (any transformers ACT2FN key).")
    scaling: float = Field(1.0, gt=0)


def apply(model: Any, opts: PeanutOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "PeanutConfig", r=opts.r, depth=opts.depth, act_fn=opts.act_fn,
                      scaling=opts.scaling)


METHOD = Method(
    name="peanut",
    summary="A small non-linear network computes the update from the frozen weight.",
    options=PeanutOptions,
    # peft's method_comparison (MetaMathQA) runs PEANuT at LoRA's rate: LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
)
