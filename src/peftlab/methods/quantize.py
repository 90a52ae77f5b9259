"""`quantize: 4bit`: train a method's adapter on a 4-bit NF4/FP4 base (QLoRA's recipe, Dettmers
et al., 2023), for every method whose peft tuner has a bitsandbytes 4-bit layer.

In peft 0.21.2 those are lora (and so dora), adalora, ia3, hira, pvera, randlora and road: each
ships `tuners/<name>/bnb.py` and dispatches a bnb `Linear4bit` base layer to it. The other tuners
would try to wrap the packed uint8 weight as if it were a float matrix, so a 4-bit base for them
is refused at option validation (`Method.parse_options`, from the `quantizable` trait).

A method opts in with three things: its options subclass `QuantizeOptions`, its `Method` sets
`quantizable=True, load_kwargs=quantize.load_kwargs`, and its `apply` starts with
`model = quantize.prepare(model, opts)`. `load_kwargs` returns nothing unless the option is set,
so the same method loads a full-precision base by default. bitsandbytes >= 0.50 runs 4-bit layers
on CPU as well as CUDA.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from peftlab.methods.base import MethodContext, MethodOptions

# Heads stay full precision: they train (modules_to_save). ".*pooler" reaches bert.pooler.dense.
SKIP_MODULES = ["lm_head", "classifier", "score", "pooler", ".*pooler"]


class QuantizeOptions(MethodOptions):
    quantize: Literal["4bit"] | None = Field(
        None, description="Load the base model 4-bit quantized (bitsandbytes) and train the adapter on it."
    )
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; NF4 is QLoRA's.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too (QLoRA's default).")


def quantized(opts: Any) -> bool:
    return getattr(opts, "quantize", None) == "4bit"


def load_kwargs(opts: Any, ctx: MethodContext) -> dict[str, Any]:
    """`from_pretrained` kwargs that load the base 4-bit, or nothing when the option is off."""
    if not quantized(opts):
        return {}
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
            llm_int8_skip_modules=SKIP_MODULES,
        ),
    }


def prepare(model: Any, opts: Any) -> Any:
    """peft's preparation of a 4-bit base for training (norms in fp32, input gradients on), when
    the base really is 4-bit; the model unchanged otherwise (the parameter estimate applies the
    method to an empty full-precision copy)."""
    if not (quantized(opts) and getattr(model, "is_loaded_in_4bit", False)):
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def restore_training_layout(model: Any) -> None:
    """bitsandbytes 0.50 on CPUs with AVX512-BF16 repacks a 4-bit layer's weight into an inference
    layout the first time the layer runs in eval mode, and never packs it back: training after a
    validation pass (training.eval_every) then failed at its next step ('a view of a leaf Variable
    that requires grad is being used in an in-place operation'). The trainer calls this before each
    step: a repacked layer gets its training layout back (bitsandbytes' own inverse conversion).
    Evaluations keep the inference layout, as a reloaded 4-bit run's do."""
    try:
        from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse
    except ImportError:  # another bitsandbytes: nothing of this kind to undo
        return
    for m in model.modules():
        w = getattr(m, "weight", None)
        state = getattr(w, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            w.data, w.quant_state = _convert_weight_packed_for_cpu_inverse(w.data, state)
