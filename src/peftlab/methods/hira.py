"""hira: Hadamard high-rank adaptation (ICLR 2025, openreview.net/forum?id=TwJrTz9cRS).

ΔW = W0 ⊙ (B A): the low-rank product modulates the frozen weight element-wise, so the update has
the high rank of W0 for LoRA's parameters. Has a bitsandbytes layer, so `quantize: 4bit` works.
"""

from typing import Any

from pydantic import Field

from peftlab.methods import quantize
from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class HiraOptions(quantize.QuantizeOptions, TargetOptions):
    r: int = Field(32, gt=0, description="Rank of B A (peft's default).")
    dropout: float = Field(0.0, ge=0, lt=1)


def apply(model: Any, opts: HiraOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "HiraConfig", r=opts.r, hira_dropout=opts.dropout)


METHOD = Method(
    name="hira",
    summary="Low-rank product that modulates the frozen weight element-wise (high-rank update).",
    options=HiraOptions,
    # peft's method_comparison (MetaMathQA, Llama-3.2-3B): hira-rank32 at 4.5e-3.
    learning_rates=rates(4.5e-3),
    apply=apply,
    load_kwargs=quantize.load_kwargs,
    mergeable=True,
    quantizable=True,
)
