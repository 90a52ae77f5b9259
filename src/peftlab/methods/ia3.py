"""ia3: learned rescaling vectors (Liu et al., 2022). Fewest parameters of all."""

from typing import Any

from pydantic import Field

from peftlab.methods import quantize
from peftlab.methods.base import Method, MethodContext
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import ia3_targets
from peftlab.tasks.spec import CLASSIFICATION, IMAGE_CLASSIFICATION


class IA3Options(quantize.QuantizeOptions):
    target_modules: list[str] | None = Field(None, description="Default: peft's per-architecture set.")
    feedforward_modules: list[str] | None = None


def apply(model: Any, opts: IA3Options, ctx: MethodContext) -> Any:
    from peft import IA3Config

    model = quantize.prepare(model, opts)
    targets, ff = ia3_targets(model, ctx.model_type, opts.target_modules, opts.feedforward_modules)
    return wrap(model, IA3Config(target_modules=targets, feedforward_modules=ff, **peft_kwargs(ctx, model)))


METHOD = Method(
    name="ia3",
    summary="Learned per-channel scaling of keys, values and feed-forward.",
    options=IA3Options,
    # The IA3 paper trains with 3e-3; classification heads start from scratch and like more.
    learning_rates={"default": 3e-3, CLASSIFICATION: 5e-3, IMAGE_CLASSIFICATION: 5e-3},
    apply=apply,
    family="scaling",
    load_kwargs=quantize.load_kwargs,
    mergeable=True,
    quantizable=True,
)
