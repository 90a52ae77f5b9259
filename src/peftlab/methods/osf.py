"""osf: orthogonal subspace fine-tuning (arXiv:2504.07097).

Each weight's top singular directions (`effective_rank`) are frozen and the rest of its SVD trains,
so updates stay orthogonal to what the model relies on most: close to full fine-tuning in
parameters, designed against forgetting.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import Method, MethodContext, rates
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions, refuse_unless


class OsfOptions(TargetOptions):
    effective_rank: int | float | None = Field(
        None, gt=0, description="Frozen top singular directions: a count, or a fraction (0, 1] of each layer's smaller "
        "width. Default: half of it.",
    )


def apply(model: Any, opts: OsfOptions, ctx: MethodContext) -> Any:
    def check(layers: list) -> None:
        k = opts.effective_rank
        if isinstance(k, int) and not isinstance(k, bool):
            refuse_unless("osf", layers, lambda i, o: k < min(i, o),
                          f"effective_rank={k} freezes the whole SVD of a layer, leaving nothing to train")

    return apply_peft(model, opts, ctx, "OSFConfig", check=check, effective_rank=opts.effective_rank)


METHOD = Method(
    name="osf",
    summary="Train the weight's lower singular subspace; freeze the top one.",
    options=OsfOptions,
    # generation: peft's method_comparison (MetaMathQA) 5e-5 (peft's docs: 1e-5 to 1e-4, full
    # fine-tuning's range); classification and images: full fine-tuning's classification rate here.
    learning_rates=rates(5e-5, 2e-4, 2e-4),
    apply=apply,
    family="subspace",
    mergeable=True,
)
