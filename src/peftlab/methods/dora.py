"""dora: weight-decomposed low-rank adaptation (Liu et al., 2024), LoRA with `use_dora`.

It takes all of lora's options (init, LoRA+, a 4-bit base): peft's DoRA layer sits on LoRA's.
"""

from typing import Any

from peftlab.methods import quantize
from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.lora import LoraOptions, apply_lora, loraplus_optimizer


def apply(model: Any, opts: LoraOptions, ctx: MethodContext) -> Any:
    return apply_lora(model, opts, ctx, use_dora=True)


METHOD = Method(
    name="dora",
    summary="LoRA with magnitude/direction decomposition.",
    options=LoraOptions,
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    load_kwargs=quantize.load_kwargs,
    make_optimizer=loraplus_optimizer,
    mergeable=True,
    peft_type="LORA",
    quantizable=True,
)
