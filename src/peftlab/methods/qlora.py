"""qlora: LoRA on a 4-bit NF4 base (Dettmers et al., 2023), via bitsandbytes.

bitsandbytes >= 0.50 runs 4-bit layers on CPU as well as CUDA, so this works on both.
The base weights really are 4-bit (bnb Linear4bit, uint8 storage); tests check it.
"""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import wrap
from peftlab.methods.lora import LoraOptions, lora_config


class QLoraOptions(LoraOptions):
    quant_type: str = Field("nf4", pattern="^(nf4|fp4)$")
    double_quant: bool = True


def load_kwargs(opts: QLoraOptions, ctx: MethodContext) -> dict[str, Any]:
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if ctx.precision == "bf16" else torch.float32
    # On CUDA the weights must be quantized straight onto the GPU: a 4-bit model cannot be
    # moved with .to() afterwards, and without a device map it would stay (and train) on CPU.
    placement = {"device_map": {"": torch.cuda.current_device()}} if torch.cuda.is_available() else {}
    return {
        **placement,
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=opts.quant_type,
            bnb_4bit_use_double_quant=opts.double_quant,
            bnb_4bit_compute_dtype=compute,
            # heads stay full precision: they train (modules_to_save). ".*pooler" reaches bert.pooler.dense
            llm_int8_skip_modules=["lm_head", "classifier", "score", "pooler", ".*pooler"],
        )
    }


def apply(model: Any, opts: QLoraOptions, ctx: MethodContext) -> Any:
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return wrap(model, lora_config(model, opts, ctx))


METHOD = Method(
    name="qlora",
    summary="LoRA on a 4-bit quantized base model.",
    options=QLoraOptions,
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    load_kwargs=load_kwargs,
    mergeable=True,  # into the full-precision base (export); the test evaluation keeps the 4-bit base
    quantized_base=True,
    peft_type="LORA",
)
