"""miss: matrix shard sharing (arXiv:2409.15371; formerly Bone).

One trainable r x out matrix whose shards are shared across the weight's input dimension:
LoRA-like quality from a single matrix, no B A product to run.
"""

from typing import Any, Literal

from pydantic import Field

from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import apply_peft
from peftlab.methods.targets import TargetOptions, refuse_unless

VARIANTS = {"balance": True, "bat": "bat", "mini": "mini"}


class MissOptions(TargetOptions):
    r: int = Field(32, gt=0, description="Shard size along the inputs; must not exceed any layer's input width "
                   "(peft's default 64 does not fit layers narrower than 64, 32 fits every real model).")
    variant: Literal["balance", "bat", "mini"] = Field(
        "balance", description="balance: MiSS proper; bat: non-linear updates across shards (widths divisible by r); "
        "mini: fewer parameters (an r x mini_r block).",
    )
    mini_r: int = Field(1, gt=0, description="mini: block width along the outputs (must divide them).")
    dropout: float = Field(0.0, ge=0, lt=1)


def apply(model: Any, opts: MissOptions, ctx: MethodContext) -> Any:
    def check(layers: list) -> None:
        refuse_unless("miss", layers, lambda i, o: opts.r <= i, f"r={opts.r} exceeds the layer's input width")
        if opts.variant == "bat":
            refuse_unless("miss", layers, lambda i, o: i % opts.r == 0 and o % opts.r == 0,
                          f"variant 'bat' needs both widths divisible by r={opts.r}")
        if opts.variant == "mini":
            refuse_unless("miss", layers, lambda i, o: o % opts.mini_r == 0,
                          f"variant 'mini' needs the output width divisible by mini_r={opts.mini_r}")

    return apply_peft(model, opts, ctx, "MissConfig", check=check, r=opts.r, init_weights=VARIANTS[opts.variant],
                      mini_r=opts.mini_r, miss_dropout=opts.dropout)


METHOD = Method(
    name="miss",
    summary="A single shared shard matrix per layer (MiSS, formerly Bone).",
    options=MissOptions,
    # peft's method_comparison (MetaMathQA) trains MiSS at LoRA's rate: LoRA's rates.
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    mergeable=True,
)
