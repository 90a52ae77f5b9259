"""cartridge: a trained KV-cache prefix (Eyuboglu et al., 2025, "Cartridges: Lightweight and
general-purpose long context representations via self-study", arXiv:2506.06266).

The keys and values of `num_virtual_tokens` prefix positions in every layer are the parameters
themselves (prefix-tuning without its embedding or MLP), started from the model's own cache for
real text, with the first position frozen as the attention sink the model is used to. The paper
trains them by distilling a long document (self-study); any loss trains them, so here they
learn the task like the other prompt methods.

On causal LMs the prefix starts as the model's cache for [BOS] + `init_text` (else the prompt
template's words), repeated to length: the untrained adapter acts as if that text preceded
every input. Elsewhere, or with `random_init`, peft's unit-normal start.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from peftlab.compat import cache_of
from peftlab.methods.base import Method, MethodContext
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.prompt_common import TextInitOptions, init_text
from peftlab.tasks.spec import TEXT_TASKS, spec


class CartridgeOptions(TextInitOptions):
    num_frozen_tokens: int = Field(1, ge=0, description="Leading positions kept frozen (the paper: 1, the sink).")

    @model_validator(mode="after")
    def _fits(self) -> CartridgeOptions:
        if self.num_frozen_tokens >= self.num_virtual_tokens:
            raise ValueError(f"num_frozen_tokens ({self.num_frozen_tokens}) must leave some of the "
                             f"{self.num_virtual_tokens} virtual tokens to train")
        return self


def _start_ids(tok: Any, text: str, n: int) -> list[int]:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if not ids:
        return []
    head = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return (head + ids * (n // len(ids) + 1))[:n]


def apply(model: Any, opts: CartridgeOptions, ctx: MethodContext) -> Any:
    import torch
    from peft import CartridgeConfig
    from peft.tuners.cartridge.utils import prompt_embeddings_from_past_key_values

    n = opts.num_virtual_tokens
    cfg = CartridgeConfig(num_virtual_tokens=n, num_frozen_tokens=opts.num_frozen_tokens, **peft_kwargs(ctx))
    text = init_text(opts, ctx)
    kv = None
    if text and spec(ctx.task).decoder_only and ctx.tokenizer is not None:
        ids = _start_ids(ctx.tokenizer, text, n)
        if ids:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    out = model(input_ids=torch.tensor([ids], device=next(model.parameters()).device), use_cache=True)
                kv = prompt_embeddings_from_past_key_values(cache_of(out), num_virtual_tokens=n)
            finally:
                model.train(was_training)
    peft_model = wrap(model, cfg)
    if kv is not None:
        peft_model.prompt_encoder[peft_model.active_adapter].load_prompt_embeddings(kv)
    return peft_model


METHOD = Method(
    name="cartridge",
    summary="Trained keys and values of a prefix in every layer, started from the model's own for real text.",
    options=CartridgeOptions,
    # The same parameters as peftlab's prefix-tuning (keys and values, text start) and its rate; peft's
    # self-study example distils into a Qwen3-4B cartridge at 1e-3. Starting point, to be measured.
    learning_rates={"default": 1e-2},
    apply=apply,
    tasks=TEXT_TASKS,
    family="prompt",
    virtual_tokens="kv",
    peft_type="CARTRIDGE",
)
