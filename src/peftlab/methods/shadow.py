"""shadow: ShadowPEFT, a small trainable network that runs beside a frozen decoder (peft 0.21).

A shadow backbone (by default a one-layer "mirror" of the base architecture, sharing its
embeddings) makes an initial state from the input; at every wrapped decoder block the difference
between the block's hidden states and the shadow state goes through a rank-`r` bottleneck back
into the block's input (scaled by `shadow_alpha`), and the shadow state is advanced by a gated
update from the block's output. The adaptation depends on the input and lives in layer space, so
it never merges into the weights.

The method owns one quirk: its auxiliary loss. The shadow path is also trained as a model of its
own (the base's LM head on the initial shadow state, cross-entropy on the labels, weighted
`auxiliary_loss_weight`). peft adds that term to `outputs.loss` only when the model computes its
own loss (labels passed); peftlab computes the causal-LM loss outside the model (completion
logits only), so `extra_loss` adds it, from the shadow state of the same forward pass, and the
trainer logs it apart (`train_extra_loss`). Evaluation losses leave it out, as for AdaLoRA.

Decoder-only causal LMs: peft finds the blocks as the model's `.layers`/`.h` list (an encoder's
`encoder.layer` is not one), and the mirror is built from the base's own config.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from peftlab.errors import MethodNotApplicable
from peftlab.methods.base import Method, MethodContext, MethodOptions, rates
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.tasks.spec import CAUSAL_LM


class ShadowOptions(MethodOptions):
    r: int = Field(8, gt=0, description="Rank of the injection bottleneck (peft's default).")
    shadow_alpha: float = Field(0.1, ge=0, description="Strength of the correction added to each block's input.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on the discrepancy before the bottleneck.")
    shadow_layers: int = Field(1, gt=0, description="Depth of the mirror shadow backbone.")
    shadow_hidden_size: int | None = Field(
        None, gt=0, description="Width of the shadow backbone (default: the base's; a projection is added otherwise).")
    shadow_intermediate_size: int | None = Field(None, gt=0, description="Feed-forward width of the shadow backbone.")
    shadow_attention_heads: int | None = Field(None, gt=0, description="Attention heads of the shadow backbone.")
    auxiliary_loss_weight: float = Field(0.05, ge=0, description="Weight of the shadow path's own LM loss.")
    target_modules: str | list[str] | None = Field(
        None, description="Decoder blocks to wrap (contiguous; a regex or names). Default: every block.")


def apply(model: Any, opts: ShadowOptions, ctx: MethodContext) -> Any:
    from peft import ShadowConfig

    inner = getattr(model, "model", None)
    if not (hasattr(inner, "layers") or hasattr(getattr(model, "transformer", None), "h")) and not opts.target_modules:
        raise MethodNotApplicable(
            f"shadow: peft wraps a decoder's list of blocks (`.layers` or `.h`), and this {ctx.model_type!r} model "
            f"has none; set `target_modules` to its blocks (a regex such as '.*\\.layers\\.\\d+$')"
        )
    cfg = ShadowConfig(
        r=opts.r, shadow_alpha=opts.shadow_alpha, shadow_dropout=opts.dropout,
        shadow_num_hidden_layers=opts.shadow_layers, shadow_hidden_size=opts.shadow_hidden_size,
        shadow_intermediate_size=opts.shadow_intermediate_size,
        shadow_num_attention_heads=opts.shadow_attention_heads,
        auxiliary_loss_weight=opts.auxiliary_loss_weight, target_modules=opts.target_modules, **peft_kwargs(ctx),
    )
    return wrap(model, cfg)


def auxiliary_loss(model: Any, batch: dict[str, Any]) -> Any:
    """auxiliary_loss_weight x the shadow path's own loss on `batch`'s labels, from the shadow state
    the forward pass just made (None when the weight is 0 or the path is off)."""
    tuner = model.base_model
    weight = tuner.peft_config[tuner.active_adapters[0]].auxiliary_loss_weight
    if weight <= 0 or "labels" not in batch or not tuner._shadow_path_active():
        return None
    loss = tuner.shadow_auxiliary_loss(batch["labels"], attention_mask=batch.get("attention_mask"))
    return None if loss is None else weight * loss


METHOD = Method(
    name="shadow",
    summary="A small parallel shadow network corrects each frozen decoder block's input (ShadowPEFT).",
    options=ShadowOptions,
    # peft's method_comparison (MetaMathQA, Llama-3.2-3B, shadow mirror): AdamW at 1e-3. Starting point.
    learning_rates=rates(1e-3),
    apply=apply,
    tasks=frozenset({CAUSAL_LM}),
    extra_loss=auxiliary_loss,
    family="side-network",
    peft_type="SHADOW",
)
