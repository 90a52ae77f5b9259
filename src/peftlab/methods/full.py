"""full: every weight trains. The quality ceiling and the cost ceiling."""

from typing import Any

from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.tasks.spec import CLASSIFICATION


class FullOptions(MethodOptions):
    pass


def apply(model: Any, opts: FullOptions, ctx: MethodContext) -> Any:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


METHOD = Method(
    name="full",
    summary="Full fine-tuning of all weights.",
    options=FullOptions,
    learning_rates={"default": 5e-5, CLASSIFICATION: 2e-4},
    apply=apply,
    family="full",
    artifact="model",
)
