"""beft: bias-efficient fine-tuning (Huang et al., 2025, "BEFT: Bias-Efficient Fine-Tuning of
Language Models in Low-Data Regimes", arXiv:2509.15974).

Adds one trainable bias vector to each value projection (b_v) and trains nothing else: the
authors find b_v the most effective bias to tune with little data, for models with biases and
without. The smallest adapter of all (out_features numbers per layer).

Merging folds b_v into the layer's own bias, so it needs a base layer that has one (BERT, ViT);
on bias-free models (Llama, T5) the adapter stays unmerged, which costs one vector add.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import VALUE_PROJ, method_targets


class BeftOptions(MethodOptions):
    target_modules: list[str] | None = Field(
        None, description="Default: the value projections (peft's per-architecture set), the paper's b_v.")


def apply(model: Any, opts: BeftOptions, ctx: MethodContext) -> Any:
    import warnings

    from peft import BeftConfig

    targets = method_targets(model, ctx.model_type, opts.target_modules, "BEFT", VALUE_PROJ)
    with warnings.catch_warnings():  # "cannot merge": a bias-free base stays unmerged (see the module)
        warnings.filterwarnings("ignore", message="Detected that the base layer has no bias term")
        return wrap(model, BeftConfig(target_modules=targets, **peft_kwargs(ctx)))


METHOD = Method(
    name="beft",
    summary="Trains one added bias vector per value projection, nothing else.",
    options=BeftOptions,
    # peft's BEFT example (low-data classification) trains at 8e-3; its MetaMathQA comparison at 1e-4 reached
    # test accuracy 0.321 (LoRA 0.478) after 5000 steps, far more than a small data set gives. Starting points.
    learning_rates={"default": 8e-3},
    apply=apply,
    family="bias",
    # Not on every model: it folds into the base's bias (see the module); export refuses it.
    mergeable=False,
    peft_type="BEFT",
)
