"""prompt-tuning: trainable soft prompt embeddings (Lester et al., 2021).

Initialised from text by default: `init_text`, or else the fixed words of the prompt
template. Text initialisation trains far more reliably than random vectors on small models.
"""

from typing import Any

from peftlab.methods.base import Method, MethodContext
from peftlab.methods.common import peft_kwargs, wrap
from peftlab.methods.prompt_common import TextInitOptions, init_text
from peftlab.tasks.spec import TEXT_TASKS


class PromptTuningOptions(TextInitOptions):
    pass


def apply(model: Any, opts: PromptTuningOptions, ctx: MethodContext) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit

    text = init_text(opts, ctx)
    kw: dict[str, Any] = {"prompt_tuning_init": PromptTuningInit.RANDOM}
    if text and ctx.tokenizer_path:
        kw = {
            "prompt_tuning_init": PromptTuningInit.TEXT,
            "prompt_tuning_init_text": text,
            "tokenizer_name_or_path": ctx.tokenizer_path,
        }
    cfg = PromptTuningConfig(num_virtual_tokens=opts.num_virtual_tokens, **kw, **peft_kwargs(ctx))
    return wrap(model, cfg)


METHOD = Method(
    name="prompt-tuning",
    summary="Trainable soft-prompt embeddings, initialised from text.",
    options=PromptTuningOptions,
    learning_rates={"default": 3e-2},
    apply=apply,
    tasks=TEXT_TASKS,
    family="prompt",
    virtual_tokens="embeddings",
)
