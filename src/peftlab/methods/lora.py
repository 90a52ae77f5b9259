"""lora: low-rank adapters (Hu et al., 2021) via peft.LoraConfig."""

from typing import Any

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import lora_targets


class LoraOptions(MethodOptions):
    r: int = Field(16, gt=0, description="Rank of the update.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(
        0.0, ge=0, lt=1,
        description="peft's default. 0.05 cost 20% of LoRA's training speed on SmolLM2 here (an extra copy of every "
        "adapted layer's input, forward and backward); see benchmarks/RESULTS.md for its effect on quality.",
    )
    target_modules: list[str] | None = Field(None, description="Default: per architecture (see targets.py).")
    use_rslora: bool = False


def lora_config(model: Any, opts: LoraOptions, ctx: MethodContext, **extra: Any) -> Any:
    from peft import LoraConfig

    targets = lora_targets(model, ctx.model_type, ctx.task, opts.target_modules)
    return LoraConfig(
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=targets,
        use_rslora=opts.use_rslora,
        **peft_kwargs(ctx),
        **extra,
    )


def apply(model: Any, opts: LoraOptions, ctx: MethodContext) -> Any:
    return wrap(model, lora_config(model, opts, ctx))


METHOD = Method(
    name="lora",
    summary="Low-rank adapters on the linear layers.",
    options=LoraOptions,
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
)
