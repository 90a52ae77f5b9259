"""lily: low-rank interconnected adaptation across layers (arXiv:2407.09946).

A adapters shared by blocks of `stride_A` consecutive layers, a small pool of B "experts" shared
by all layers and mixed per input by a learned router. The router makes the update input-dependent,
so it cannot be folded into the weights (peft has no merge for Lily).
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class LilyOptions(TargetOptions):
    r: int = Field(32, gt=0, description="Rank; Lily's authors suggest 2-4x the LoRA rank you would use.")
    stride_A: int = Field(1, ge=1, description="Consecutive layers sharing one A (1: one A per layer, fits any depth).")
    num_B: int = Field(2, ge=2, description="B experts shared by all layers (the router needs at least 2).")
    scaling: float = Field(1.0, gt=0)


def apply(model: Any, opts: LilyOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "LilyConfig", r=opts.r, stride_A=opts.stride_A, num_B=opts.num_B,
                      scaling=opts.scaling)


METHOD = Method(
    name="lily",
    summary="Layer-shared A adapters and routed, globally shared B experts.",
    options=LilyOptions,
    # peft's method_comparison (MetaMathQA) and its Lily example train at LoRA's rate: LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=False,
)
