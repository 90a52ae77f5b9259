"""Helpers shared by the peft-backed methods."""

from __future__ import annotations

from typing import Any

from peft import TaskType, get_peft_model

from peftlab.methods.base import MethodContext

_TASK_TYPES = {
    "causal-lm": TaskType.CAUSAL_LM,
    "seq2seq": TaskType.SEQ_2_SEQ_LM,
    "classification": TaskType.SEQ_CLS,
    "image-classification": None,  # peft has no task type for it; the head is saved via modules_to_save
}


def peft_kwargs(ctx: MethodContext) -> dict[str, Any]:
    """task_type and modules_to_save for the task: new classifier heads must train and be saved.

    For SEQ_CLS peft adds the classifier head itself; the task may list more (the BERT pooler,
    which sentence-embedding checkpoints never trained), and those are saved in the adapter,
    so plain `PeftModel.from_pretrained` restores them.
    """
    kw: dict[str, Any] = {"task_type": _TASK_TYPES[ctx.task]}
    if ctx.head_modules:
        kw["modules_to_save"] = list(ctx.head_modules)
    return kw


def wrap(model: Any, config: Any) -> Any:
    return get_peft_model(model, config)
