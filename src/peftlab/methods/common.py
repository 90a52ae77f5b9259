"""Helpers shared by the peft-backed methods (peft is imported when a method is applied)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peftlab.methods.base import MethodContext
from peftlab.tasks.spec import spec


def peft_kwargs(ctx: MethodContext, model: Any = None) -> dict[str, Any]:
    """task_type and modules_to_save for the task: new classifier heads must train and be saved.

    For SEQ_CLS peft adds the classifier head itself; the task may list more (the BERT pooler,
    which sentence-embedding checkpoints never trained), and those are saved in the adapter,
    so plain `PeftModel.from_pretrained` restores them. Tasks peft has no type for (images)
    save their head through modules_to_save alone.

    Given the model, a head module that holds no weights itself (BertPooler: a Linear and an
    activation) is named by its weighted submodules instead ("pooler" -> "pooler.dense"): peft
    0.21's generic `merge_and_unload` (every tuner but LoRA's) reads `.weight` off each
    modules_to_save wrapper and fails on such a module.
    """
    kw: dict[str, Any] = {"task_type": spec(ctx.task).task_type()}
    if ctx.head_modules:
        kw["modules_to_save"] = _weighted(model, ctx.head_modules) if model is not None else list(ctx.head_modules)
    return kw


def _weighted(model: Any, names: list[str]) -> list[str]:
    out = []
    for name in names:
        mod = next((m for n, m in model.named_modules() if n == name or n.endswith("." + name)), None)
        if mod is None or list(mod.parameters(recurse=False)):
            out.append(name)
            continue
        subs = [f"{name}.{n}" for n, m in mod.named_modules() if n and list(m.parameters(recurse=False))]
        out.extend(subs or [name])
    return out


def apply_peft(model: Any, opts: Any, ctx: MethodContext, config_name: str, check: Any = None, **kw: Any) -> Any:
    """Wrap `model` with peft's `config_name` (e.g. "LoHaConfig") on the options' target modules
    (default: targets.lora_targets), the task's type and heads, and `kw`; on a 4-bit base when the
    options ask for one. `check(layers)`, given (name, in, out) of each targeted linear layer, may
    refuse widths that do not fit (targets.refuse_unless) and may return config kwargs fitted to them.

    A structural constraint peft checks itself (a ValueError while it builds the layers) is reported
    as MethodNotApplicable with peft's reason, before any training."""
    import peft

    from peftlab.errors import MethodNotApplicable
    from peftlab.methods import quantize
    from peftlab.methods.targets import layer_widths, lora_targets

    model = quantize.prepare(model, opts)
    targets = lora_targets(model, ctx.model_type, ctx.task, opts.target_modules)
    if check is not None:
        kw.update(check(layer_widths(model, targets)) or {})
    cfg = getattr(peft, config_name)(target_modules=targets, **kw, **peft_kwargs(ctx, model))
    try:
        return wrap(model, cfg)
    except ValueError as e:
        raise MethodNotApplicable(f"{cfg.peft_type.value.lower()}: peft refused this model: {e}") from None


def wrap(model: Any, config: Any) -> Any:
    """`get_peft_model`, without the deprecation warning that peft's own code raises inside it:
    peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5.23 deprecated
    (peft/peft_model.py, PeftModel.__init__). Nothing of peftlab's calls it."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def save_artifact(model: Any, path: str | Path) -> None:
    """Write a trained run's artifact: what `model.save_pretrained(path)` writes, except for a LoRA
    whose initialisation rewrote the base weights (PiSSA, OLoRA, CorDA, LoRA-GA), which is written as
    the equivalent plain LoRA so that it reloads on the original base (lora_init.save_converted).

    The recipe calls this for the final artifact instead of `model.save_pretrained`. The Trainer's
    checkpoints stay as peft saves them: a resumed run re-applies the method to the original base,
    which re-derives the same rewritten base, and then loads the checkpoint's adapter onto it.
    """
    from peftlab.methods import lora_init

    if getattr(model, lora_init.INITIAL_ADAPTER, None) is not None:
        lora_init.save_converted(model, path)
    else:
        model.save_pretrained(path)


# peft tuners whose layers cannot fold into the weights (their merge raises NotImplementedError in
# peft 0.21): Lily's router mixes its B experts per input, so its update is not a fixed matrix.
UNMERGEABLE_PEFT_TYPES = frozenset({"LILY"})


def can_merge(model: Any) -> bool:
    """Whether the adapter's weights can be folded into the base for inference: LoRA, DoRA,
    AdaLoRA, IA3, OFT, FourierFT and most of the low-rank family can; prompt-learning adapters have
    nothing to fold, nor has an adaption prompt (its prompts live inside the attention: peft gives it
    no merge), Lily's and ShadowPEFT's updates depend on the input (peft's own
    `_check_merge_allowed` refuses the latter), and folding into a 4-bit base (qlora, quantize:
    4bit) would re-quantize it, so those are left as they are. Asked of the model alone, so that a
    reloaded adapter (models/trained.py) answers as the trained one does."""
    from peft import PeftModel

    if not isinstance(model, PeftModel) or getattr(model, "is_quantized", False):
        return False
    cfg = model.active_peft_config
    if (cfg.is_prompt_learning or not hasattr(model.base_model, "merge_adapter")
            or str(getattr(cfg.peft_type, "value", cfg.peft_type)) in UNMERGEABLE_PEFT_TYPES):
        return False
    check = getattr(model.base_model, "_check_merge_allowed", None)  # the tuner's own refusal (ShadowPEFT's)
    try:
        with warnings.catch_warnings():  # its tied-embeddings warning comes again if it merges
            warnings.simplefilter("ignore")
            if check is not None:
                check()
    except (NotImplementedError, ValueError):
        return False
    return True


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
        # OSF folds its update in for good (peft 0.21: "OSF models do not support unmerging"); the
        # merged model computes the same outputs, and the adapter was saved before the evaluation.
        if restore:
            with contextlib.suppress(NotImplementedError):
                model.unmerge_adapter()
