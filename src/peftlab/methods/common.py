"""Helpers shared by the peft-backed methods (peft is imported when a method is applied)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from peftlab.methods.base import MethodContext
from peftlab.tasks.spec import spec


def peft_kwargs(ctx: MethodContext) -> dict[str, Any]:
    """task_type and modules_to_save for the task: new classifier heads must train and be saved.

    For SEQ_CLS peft adds the classifier head itself; the task may list more (the BERT pooler,
    which sentence-embedding checkpoints never trained), and those are saved in the adapter,
    so plain `PeftModel.from_pretrained` restores them. Tasks peft has no type for (images)
    save their head through modules_to_save alone.
    """
    kw: dict[str, Any] = {"task_type": spec(ctx.task).task_type()}
    if ctx.head_modules:
        kw["modules_to_save"] = list(ctx.head_modules)
    return kw


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total); counts 4-bit packed weights at their logical size, as peft does."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def wrap(model: Any, config: Any) -> Any:
    """`get_peft_model`, without the deprecation warning that peft's own code raises inside it:
    peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5.23 deprecated
    (peft/peft_model.py, PeftModel.__init__). Nothing of peftlab's calls it."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def can_merge(model: Any) -> bool:
    """Whether the adapter's weights can be folded into the base for inference: LoRA, DoRA,
    AdaLoRA, IA3, OFT, FourierFT... can; prompt-learning adapters have nothing to fold, nor has
    an adaption prompt (its prompts live inside the attention: peft gives it no merge), and
    folding into a 4-bit base (qlora) would re-quantize it, so those are left as they are."""
    from peft import PeftModel

    return (isinstance(model, PeftModel) and not model.active_peft_config.is_prompt_learning
            and not getattr(model, "is_quantized", False) and hasattr(model.base_model, "merge_adapter"))


def try_merge(model: Any) -> bool:
    """Fold the adapter in where it can be (`can_merge`), and where peft's layers accept it: BEFT's bias
    folds into the base layer's bias, which a bias-free model (Llama, T5) lacks, and peft refuses
    (ValueError). Then any layer already folded is unfolded again and the model runs unmerged.
    Returns whether the adapter is folded in."""
    if not can_merge(model):
        return False
    try:
        model.merge_adapter()
    except ValueError:
        with warnings.catch_warnings():  # the layers never folded warn "Already unmerged"
            warnings.simplefilter("ignore")
            model.unmerge_adapter()
        return False
    return True


def merge_and_unload(model: Any) -> Any:
    """The base model with the adapter folded in and the peft wrappers gone (a merged export).

    Modules trained whole (`modules_to_save`: classifier heads, a BERT pooler) are put back in
    place first, as their trained copies: peft 0.21's generic unload (every tuner but LoRA) reads a
    `.weight` of each such module, which BERT's pooler has not ('BertPooler' object has no
    attribute 'weight')."""
    from peft.utils.other import ModulesToSaveWrapper

    for name, mod in list(model.named_modules()):
        if isinstance(mod, ModulesToSaveWrapper):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, mod.modules_to_save[mod.active_adapters[0]])
    return model.merge_and_unload()


@contextlib.contextmanager
def merged_for_inference(model: Any, restore: bool = True) -> Iterator[None]:
    """Fold the adapter into the base weights (W + s·BA) for the duration: each layer then runs
    one matmul instead of the base's plus the adapter's. Measured on SmolLM2-135M LoRA, statista:
    generation 20% faster with identical outputs and test loss (benchmarks/eval_levers.py).
    `restore=False` leaves it merged (the run's last use of the model: unmerging IA3 divides by
    its scaling vector, which peft warns is inexact, for nothing)."""
    if not try_merge(model):
        yield
        return
    try:
        yield
    finally:
        if restore:
            model.unmerge_adapter()
