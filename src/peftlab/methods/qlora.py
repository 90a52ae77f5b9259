"""qlora: LoRA on a 4-bit NF4 base (Dettmers et al., 2023), via bitsandbytes.

The same method as `lora` with `quantize: 4bit` on by default (methods/quantize.py), kept as a
name of its own because it is the best-known recipe. bitsandbytes >= 0.50 runs 4-bit layers on CPU
as well as CUDA, so this works on both. The base weights really are 4-bit (bnb Linear4bit, uint8
storage); tests check it.
"""

from typing import Literal

from pydantic import Field

from peftlab.methods import quantize
from peftlab.methods.base import LORA_LEARNING_RATES, Method
from peftlab.methods.lora import LoraOptions, apply, loraplus_optimizer


class QLoraOptions(LoraOptions):
    quantize: Literal["4bit"] = Field("4bit", description="Always 4-bit: for a full-precision base use lora.")


METHOD = Method(
    name="qlora",
    summary="LoRA on a 4-bit quantized base model.",
    options=QLoraOptions,
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    load_kwargs=quantize.load_kwargs,
    make_optimizer=loraplus_optimizer,
    mergeable=True,  # into the full-precision base (export); the test evaluation keeps the 4-bit base
    peft_type="LORA",
    quantizable=True,
)
