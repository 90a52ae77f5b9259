"""adaption-prompt: LLaMA-Adapter (Zhang et al., 2023, "LLaMA-Adapter: Efficient Fine-tuning of
Language Models with Zero-init Attention", arXiv:2303.16199). Causal LMs of the architectures peft
implements it for (Llama and Mistral; also GPT-2).

The top `adapter_layers` attention layers each attend to `adapter_len` learned prompt vectors
besides the sequence, through a gate that starts at zero: training starts from the base model
exactly, and the prompt's influence grows as it learns. The prompts live inside the attention,
not in the sequence or the KV cache, so generation runs as for any adapter.

peft recomputes the attention's queries the way those architectures compute them, so other
architectures are refused before training, with that reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from peftlab.errors import MethodNotApplicable
from peftlab.methods.base import Method, MethodContext, MethodOptions
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.tasks.spec import CAUSAL_LM


class AdaptionPromptOptions(MethodOptions):
    adapter_len: int = Field(10, gt=0, le=512, description="Prompt vectors per adapted layer (the paper: 10).")
    adapter_layers: int | None = Field(
        None, gt=0, description="Adapted layers, counted from the top. Default: all (as peft's MetaMathQA comparison).")


def apply(model: Any, opts: AdaptionPromptOptions, ctx: MethodContext) -> Any:
    from peft import AdaptionPromptConfig
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    model_type = model.config.model_type
    if model_type not in TRANSFORMERS_MODEL_CONFIG:
        raise MethodNotApplicable(
            f"adaption-prompt: peft implements it for {', '.join(TRANSFORMERS_MODEL_CONFIG)} models only (it "
            f"recomputes the attention's queries as those architectures do); this model is {model_type!r}"
        )
    layers = model.config.num_hidden_layers
    if opts.adapter_layers is not None and opts.adapter_layers > layers:
        raise MethodNotApplicable(f"adaption-prompt: adapter_layers = {opts.adapter_layers}, but the model has "
                                  f"{layers} layers")
    cfg = AdaptionPromptConfig(adapter_len=opts.adapter_len, adapter_layers=opts.adapter_layers or layers,
                               **peft_kwargs(ctx))
    return wrap(model, cfg)


METHOD = Method(
    name="adaption-prompt",
    summary="Learned prompts inside the top attention layers, behind a zero-initialised gate (LLaMA-Adapter).",
    options=AdaptionPromptOptions,
    # peft's MetaMathQA comparison: 5e-3 (test accuracy 0.384; 5e-4 gave 0.212). Starting point, to be measured.
    learning_rates={"default": 5e-3},
    apply=apply,
    tasks=frozenset({CAUSAL_LM}),
    family="prompt",
    peft_type="ADAPTION_PROMPT",
)
