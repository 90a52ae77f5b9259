"""cpt: context-aware prompt tuning (Blau et al., 2024, "Context-aware Prompt Tuning: Advancing
In-Context Learning with Adversarial Methods", arXiv:2410.17222). Causal LMs only (peft's CPTConfig
accepts CAUSAL_LM alone).

The soft prompt is real text: the embeddings of a context's tokens, each allowed to move only
within a small ball around its start (projected gradient descent: radius `epsilon` for input
tokens, `format_epsilon` for template tokens, scaled by sqrt(hidden / 2048)). Prompt tuning that
cannot drift far from words the model knows.

The context: `init_text` (the paper's is a few training examples, written out) as "input"
tokens, else the prompt template's fixed words as "template" tokens; one or the other is needed.
The paper's extra loss on the context's own labels, with its decay (`opt_weighted_loss_type`),
needs labelled examples in the context and peft computes it only when the model is given labels;
peftlab trains on the completion loss, so CPT here is its constrained soft prompt.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from peftlab.errors import MethodNotApplicable
from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.prompt_common import TextInitOptions, init_text
from peftlab.tasks.spec import CAUSAL_LM

INPUT, TEMPLATE = 2, 1  # CPT's token types (peft's cpt_tokens_type_mask): 1 input template, 2 input


class CPTOptions(MethodOptions):
    init_text: str | None = Field(
        None, description="The context, e.g. a few examples written out. Default: the prompt template's words.")
    max_tokens: int = Field(128, gt=0, le=512, description="The context is cut to this many tokens.")
    epsilon: float = Field(0.2, gt=0, description="Radius for the context's input tokens (peft's CPT example: 0.2).")
    format_epsilon: float = Field(0.1, gt=0, description="Radius for template tokens (peft's default and example).")


def _tokenizer(ctx: MethodContext) -> Any:
    if ctx.tokenizer is not None:
        return ctx.tokenizer
    if ctx.tokenizer_path is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ctx.tokenizer_path)


def apply(model: Any, opts: CPTOptions, ctx: MethodContext) -> Any:
    from peft import CPTConfig

    text = init_text(TextInitOptions(init_text=opts.init_text), ctx)
    tok = _tokenizer(ctx)
    ids = tok(text, add_special_tokens=False)["input_ids"][: opts.max_tokens] if text and tok is not None else []
    if not ids:
        raise MethodNotApplicable(
            "cpt: needs a context to tune: set `init_text` (e.g. a few examples written out), or give the prompt "
            "template some fixed words"
        )
    kind = INPUT if opts.init_text else TEMPLATE
    cfg = CPTConfig(
        cpt_token_ids=ids, cpt_mask=[1] * len(ids), cpt_tokens_type_mask=[kind] * len(ids),
        opt_projection_epsilon=opts.epsilon, opt_projection_format_epsilon=opts.format_epsilon,
        **peft_kwargs(ctx),
    )
    return wrap(model, cfg)


METHOD = Method(
    name="cpt",
    summary="Prompt tuning of real context tokens, each kept within a small ball of its own embedding.",
    options=CPTOptions,
    # peft's CPT example trains at 1e-4 (projection radii 0.2 / 0.1). Starting point, to be measured.
    learning_rates={"default": 1e-4},
    apply=apply,
    tasks=frozenset({CAUSAL_LM}),
    family="prompt",
    virtual_tokens="embeddings",
    peft_type="CPT",
)
