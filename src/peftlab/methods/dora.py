"""dora: weight-decomposed low-rank adaptation (Liu et al., 2024), LoRA with `use_dora`."""

from typing import Any

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import wrap
from peftlab.methods.lora import LoraOptions, lora_config


def apply(model: Any, opts: LoraOptions, ctx: MethodContext) -> Any:
    return wrap(model, lora_config(model, opts, ctx, use_dora=True))


METHOD = Method(
    name="dora",
    summary="LoRA with magnitude/direction decomposition.",
    options=LoraOptions,
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
    peft_type="LORA",
)
