"""hra: Householder reflection adaptation (Yuan et al., 2024, "Bridging The Gap between Low-rank
and Orthogonal Adaptation via Householder Reflection Adaptation", arXiv:2405.17484).

Each targeted weight is multiplied by a chain of r learned Householder reflections, an
orthogonal matrix (as in OFT) that differs from the identity by a rank-r term (as in LoRA).

`r` must be even: peft starts the chain from pairs of equal reflections, which cancel, so the
model starts unchanged; an odd r starts from a random rotation instead (peft only warns).
`apply_gs` orthogonalises the reflection planes (Gram-Schmidt), the paper's strictest variant.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from peftlab.errors import MethodNotApplicable
from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import method_targets
from peftlab.methods.widths import describe, require_widths, target_widths


class HRAOptions(MethodOptions):
    r: int = Field(8, gt=0, description="Reflections per layer (peft's default); even, so training starts from W.")
    apply_gs: bool = Field(False, description="Gram-Schmidt orthogonalisation of the reflection planes.")
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set (query, value).")

    @field_validator("r")
    @classmethod
    def _even(cls, r: int) -> int:
        if r % 2:
            raise ValueError("must be even: pairs of equal reflections make the untrained adapter the identity")
        return r


def apply(model: Any, opts: HRAOptions, ctx: MethodContext) -> Any:
    from peft import HRAConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "HRA")
    widths = target_widths(model, targets)
    require_widths("hra", widths, targets)
    if any(opts.r > i for i, _ in widths.values()):
        raise MethodNotApplicable(
            f"hra: r = {opts.r} reflections exceed a targeted layer's input width ({describe(widths, 'in')}); "
            f"lower r"
        )
    return wrap(model, HRAConfig(r=opts.r, apply_GS=opts.apply_gs, target_modules=targets, **peft_kwargs(ctx)))


METHOD = Method(
    name="hra",
    summary="A chain of learned Householder reflections on each targeted weight: orthogonal and low-rank at once.",
    options=HRAOptions,
    # peft's MetaMathQA comparison configures HRA (rank 32) at its default rate, LoRA's 1e-4: LoRA's rates
    # here, starting points to be measured.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    family="orthogonal",
    mergeable=True,
    peft_type="HRA",
)
