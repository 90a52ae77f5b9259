"""prefix-tuning: trainable key/value prefixes in every layer (Li & Liang, 2021)."""

from typing import Any

from peft import PrefixTuningConfig
from pydantic import Field

from peftlab.methods.base import TEXT_TASKS, Method, MethodContext
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.prompt_common import VirtualTokenOptions


class PrefixOptions(VirtualTokenOptions):
    prefix_projection: bool = Field(False, description="Reparameterise the prefix through an MLP.")
    encoder_hidden_size: int | None = Field(None, gt=0)


def apply(model: Any, opts: PrefixOptions, ctx: MethodContext) -> Any:
    kw = {"encoder_hidden_size": opts.encoder_hidden_size} if opts.encoder_hidden_size else {}
    cfg = PrefixTuningConfig(
        num_virtual_tokens=opts.num_virtual_tokens,
        prefix_projection=opts.prefix_projection,
        **kw,
        **peft_kwargs(ctx),
    )
    return wrap(model, cfg)


METHOD = Method(
    name="prefix-tuning",
    summary="Trainable key/value prefixes in every attention layer.",
    options=PrefixOptions,
    learning_rates={"default": 1e-2},
    apply=apply,
    tasks=TEXT_TASKS,
)
