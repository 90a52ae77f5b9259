"""frod: full-rank efficient fine-tuning with rotational degrees (AAAI 2026, doi:10.1609/aaai.v40i31.39813).

A full-rank basis shared by the layers of each kind (built from their weights) and sparse trained
rotation coefficients: full-rank updates from few parameters. The projections are saved with the
adapter, so it reloads without rebuilding them.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions


class FrodOptions(TargetOptions):
    sparse_rate: float = Field(0.01, gt=0, le=1, description="Share of off-diagonal rotation entries that train.")
    regularization_alpha: float = Field(1e-3, gt=0, description="Stabilises the shared basis' inverse.")
    dropout: float = Field(0.0, ge=0, lt=1)
    projection_prng_key: int = Field(0, description="Seed of the sparse pattern.")


def apply(model: Any, opts: FrodOptions, ctx: MethodContext) -> Any:
    return apply_peft(model, opts, ctx, "FrodConfig", sparse_rate=opts.sparse_rate,
                      regularization_alpha=opts.regularization_alpha, frod_dropout=opts.dropout,
                      projection_prng_key=opts.projection_prng_key, save_projection=True, progressbar=False)


METHOD = Method(
    name="frod",
    summary="Shared full-rank basis with sparse trained rotations.",
    options=FrodOptions,
    # generation: peft's method_comparison (MetaMathQA) best at LoRA's rate (1e-3 did worse);
    # classification 2e-2 and images 5e-4: peft's FRoD examples (BERT on SST-2, CLIP ViT).
    learning_rates=rates(LORA_LEARNING_RATES["default"], 2e-2, 5e-4),
    apply=apply,
    family="shared-basis",
    init_reads_weights=True,
    mergeable=True,
)
