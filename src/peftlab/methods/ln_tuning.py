"""ln-tuning: train the normalisation layers only (Zhao et al., 2023, "Tuning LayerNorm in
Attention: Towards Efficient Multi-Modal LLM Finetuning", arXiv:2312.11420).

Every LayerNorm/RMSNorm of the model trains its gain (and bias, where it has one); nothing else
does. A few thousand parameters on small models, a fraction of a percent on large ones.

Targets: peft's per-architecture list where it has one (Llama: the two norms of each block and
the final one), else every normalisation layer of the model found by type (BERT, ViT, T5, ...,
for which peft has no list). Merging swaps the trained norms in.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import Field

from peftlab.errors import ModelError
from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import method_targets, norm_names
from peftlab.tasks.spec import CLASSIFICATION, IMAGE_CLASSIFICATION


class LNTuningOptions(MethodOptions):
    target_modules: list[str] | None = Field(
        None, description="Default: peft's per-architecture norms, else every normalisation layer.")


def apply(model: Any, opts: LNTuningOptions, ctx: MethodContext) -> Any:
    from peft import LNTuningConfig

    norms = norm_names(model)
    if not opts.target_modules and not norms:
        raise ModelError(f"ln-tuning: a {ctx.model_type!r} model has no normalisation layers; set `target_modules`")
    targets = method_targets(model, ctx.model_type, opts.target_modules, "LNTUNING", (tuple(norms),))
    with warnings.catch_warnings():  # peft asks each norm for linear-layer widths and warns that it has none
        warnings.filterwarnings("ignore", message="Unsupported layer type", category=UserWarning)
        return wrap(model, LNTuningConfig(target_modules=targets, **peft_kwargs(ctx)))


METHOD = Method(
    name="ln-tuning",
    summary="Trains only the normalisation layers' gains and biases.",
    options=LNTuningOptions,
    # peft's LN-tuning causal-LM notebook trains at 5e-2; its MetaMathQA comparison at 1e-4 did not learn (test
    # accuracy 0.0). Norm gains are O(1) numbers, so the rate is a step size on them. Starting points, to be
    # measured.
    learning_rates={"default": 5e-2, CLASSIFICATION: 1e-2, IMAGE_CLASSIFICATION: 1e-2},
    apply=apply,
    family="scaling",
    mergeable=True,
    peft_type="LN_TUNING",
)
