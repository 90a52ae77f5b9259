"""supertuning: sparse fine-tuning of the largest weights (Super-Tuning, arXiv:2607.09287).

The base weight stays frozen; a sparse set of its entries, chosen by magnitude, trains (1% by
default). With `r`, a LoRA is added on top (the paper's "Supra"). No calibration pass.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions, refuse_unless


class SupertuningOptions(TargetOptions):
    sparsity: float = Field(0.99, ge=0, lt=1, description="Share of entries kept frozen (0.99: 1% train).")
    select_top: bool = Field(True, description="Train the largest-magnitude entries (False: the smallest).")
    r: int | None = Field(None, gt=0, description="Supra: add a LoRA of this rank (alpha 2r).")


def apply(model: Any, opts: SupertuningOptions, ctx: MethodContext) -> Any:
    def check(layers: list) -> None:
        refuse_unless("supertuning", layers, lambda i, o: int(i * o * (1 - opts.sparsity)) >= 1,
                      f"sparsity={opts.sparsity} leaves no entry to train")

    return apply_peft(model, opts, ctx, "SupertuningConfig", check=check, sparsity=opts.sparsity,
                      select_top=opts.select_top, r=opts.r, save_precomputed_indices=True)


METHOD = Method(
    name="supertuning",
    summary="Train a sparse set of the weight's largest entries (optionally plus LoRA).",
    options=SupertuningOptions,
    # peft's method_comparison (MetaMathQA) runs Super-Tuning at LoRA's rate: LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    family="fourier/sparse",
    mergeable=True,
)
