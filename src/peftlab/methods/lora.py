"""lora: low-rank adapters (Hu et al., 2021) via peft.LoraConfig, with LoRA's variants as options.

- `use_rslora`: scale alpha/sqrt(r) instead of alpha/r (Kalajdzievski, 2023), so higher ranks
  keep learning.
- `init`: how A and B start (peft's `init_lora_weights`; see lora_init.py for each and what it
  needs). PiSSA, OLoRA, CorDA and LoRA-GA rewrite the base weights: their adapter must be written
  with `common.save_artifact`, which converts it to a plain LoRA that reloads on the original base.
- `loraplus_lr_ratio`: LoRA+ (Hayou et al., 2024) trains B at that multiple of A's rate, through
  the `make_optimizer` trait (peft's `create_loraplus_optimizer`).
- `quantize: 4bit`: the base loads 4-bit (quantize.py); `qlora` is lora with it on by default.
"""

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from peftlab.methods import lora_init, quantize
from peftlab.methods.base import LORA_LEARNING_RATES, Method, MethodContext
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.targets import lora_targets

INIT_PATTERN = re.compile(r"^(default|gaussian|orthogonal|pissa|pissa_niter_\d+|olora|eva|corda|lora_ga|loftq)$")


class LoraOptions(quantize.QuantizeOptions):
    r: int = Field(16, gt=0, description="Rank of the update.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(
        0.0, ge=0, lt=1,
        description="peft's default. 0.05 cost 20% of LoRA's training speed on SmolLM2 here (an extra copy of every "
        "adapted layer's input, forward and backward); see benchmarks/RESULTS.md for its effect on quality.",
    )
    target_modules: list[str] | None = Field(None, description="Default: per architecture (see targets.py).")
    use_rslora: bool = Field(False, description="rsLoRA: scale alpha/sqrt(r), so that high ranks keep learning.")
    init: str = Field(
        "default",
        description="How A and B start: default (B = 0), gaussian, orthogonal, pissa, pissa_niter_<n> (fast SVD, "
        "n subspace iterations), olora, eva, corda, lora_ga (these three need training batches), loftq (needs "
        "quantize: 4bit).",
    )
    loraplus_lr_ratio: float | None = Field(
        None, ge=1, description="LoRA+: B trains at this multiple of the learning rate (the paper suggests 16).",
    )
    calibration_batches: int = Field(8, gt=0, description="Training batches read by eva, corda and lora_ga.")
    eva_rho: float = Field(2.0, ge=1, description="EVA: a layer may take up to rho x r ranks (1: no redistribution).")
    corda_method: Literal["ipm", "kpm"] = Field(
        "ipm", description="CorDA: ipm adapts the task's principal directions, kpm keeps the world knowledge's.",
    )
    trainable_tokens: list[int | str] = Field(
        default_factory=list,
        description="Tokens whose embedding rows train beside the adapter (peft's trainable_token_indices; with tied "
        "embeddings their output rows too): 'eos' for the token that ends a completion, other strings as tokens "
        "of the vocabulary, or ids. For a base that never learned to end a text (stories260k gives its end token "
        "a probability of 0): ['eos'] teaches it to stop.",
    )

    @field_validator("init")
    @classmethod
    def _known_init(cls, v: str) -> str:
        v = v.replace("-", "_")  # lora-ga, pissa-niter-16
        if not INIT_PATTERN.match(v):
            raise ValueError(f"unknown init; one of: {', '.join(lora_init.INITS)}")
        return v

    @model_validator(mode="after")
    def _init_fits(self) -> "LoraOptions":
        if self.init == "orthogonal" and self.r % 2:
            raise ValueError("init 'orthogonal' needs an even r")
        if self.init == "loftq" and not quantize.quantized(self):
            raise ValueError("init 'loftq' fits LoRA to a 4-bit base's quantization error: it needs quantize: 4bit")
        if quantize.quantized(self) and lora_init.rewrites_base(self.init):
            raise ValueError(
                f"init {self.init!r} rewrites the base weights as W - BA, which a 4-bit base cannot hold exactly: the "
                "trained adapter could not be saved in a form that reloads on it; use it without quantize"
            )
        return self


def token_ids(model: Any, tokens: list[int | str], ctx: MethodContext) -> list[int]:
    """The ids of `trainable_tokens`: 'eos' is the token a completion ends with (the chat end of turn,
    else EOS: what training appends), strings the tokenizer's tokens, ints as given. Without the
    run's tokenizer (the preflight and the estimate, on an empty model) a string stands for a
    distinct id of its own: the count is right, and the run looks it up."""
    from peftlab.errors import MethodNotApplicable

    tok = ctx.tokenizer
    vocab = int(getattr(model.get_input_embeddings(), "num_embeddings", 0) or 0)
    out: list[int] = []
    eos = getattr(model.config, "eos_token_id", None)
    taken = {t for t in tokens if isinstance(t, int)} | set(eos if isinstance(eos, list) else [eos])
    stand_ins = iter(i for i in range(vocab) if i not in taken)
    for t in tokens:
        if isinstance(t, int):
            i = t
        elif t == "eos":
            if tok is not None:
                from peftlab.data.chat_encoding import end_of_turn_ids

                ids = end_of_turn_ids(tok)
                i = ids[0] if ids else None
            else:
                i = getattr(model.config, "eos_token_id", None)
                i = i[0] if isinstance(i, list) else i
            if i is None:
                raise MethodNotApplicable("trainable_tokens: 'eos': the model and its tokenizer name no end token")
        elif tok is None:
            i = next(stand_ins)
        else:
            i = tok.convert_tokens_to_ids(t)
            if i is None or i == tok.unk_token_id:
                raise MethodNotApplicable(f"trainable_tokens: {t!r} is not a token of this tokenizer")
        if not 0 <= int(i) < vocab:
            raise MethodNotApplicable(f"trainable_tokens: id {i} is outside the embedding table (0..{vocab - 1})")
        out.append(int(i))
    return sorted(set(out))


def lora_config(model: Any, opts: LoraOptions, ctx: MethodContext, **extra: Any) -> Any:
    from peft import LoraConfig

    targets = lora_targets(model, ctx.model_type, ctx.task, opts.target_modules)
    init = "default" if lora_init.is_meta(model) else opts.init
    if opts.trainable_tokens:
        extra["trainable_token_indices"] = token_ids(model, opts.trainable_tokens, ctx)
    return LoraConfig(
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=targets,
        use_rslora=opts.use_rslora,
        init_lora_weights=lora_init.peft_value(init),
        **(lora_init.config_extras(opts) if init == opts.init else {}),
        **peft_kwargs(ctx, model),
        **extra,
    )


def apply_lora(model: Any, opts: LoraOptions, ctx: MethodContext, **extra: Any) -> Any:
    """LoRA (or DoRA, with `use_dora=True`) with the options' init, on a 4-bit base if asked."""
    model = quantize.prepare(model, opts)
    cfg = lora_config(model, opts, ctx, **extra)
    lora_init.before_wrap(model, cfg, opts, ctx)
    wrapped = wrap(model, cfg)
    lora_init.after_wrap(wrapped, opts, ctx)
    return wrapped


def apply(model: Any, opts: LoraOptions, ctx: MethodContext) -> Any:
    return apply_lora(model, opts, ctx)


def loraplus_optimizer(model: Any, opts: LoraOptions, lr: float, weight_decay: float) -> Any:
    """LoRA+'s AdamW (B and the 1-D parameters at `loraplus_lr_ratio` x lr), or None without LoRA+."""
    if opts.loraplus_lr_ratio is None:
        return None
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=opts.loraplus_lr_ratio,
                                     loraplus_weight_decay=weight_decay)


METHOD = Method(
    name="lora",
    summary="Low-rank adapters on the linear layers.",
    options=LoraOptions,
    learning_rates=LORA_LEARNING_RATES,
    apply=apply,
    load_kwargs=quantize.load_kwargs,
    make_optimizer=loraplus_optimizer,
    mergeable=True,
    quantizable=True,
)
