"""Target modules per architecture.

peft ships per-architecture defaults (TRANSFORMERS_MODELS_TO_*_TARGET_MODULES_MAPPING); we
use them when their module names exist in the model, and otherwise fall back to the common
naming patterns below. For LoRA on
generative models we target every linear layer of the transformer blocks ("all-linear"
in peft terms, resolved to explicit names), which QLoRA's authors found necessary to match
full fine-tuning; encoders for classification use peft's attention defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from peftlab.errors import MethodNotApplicable, ModelError
from peftlab.methods.base import MethodOptions
from peftlab.tasks.spec import spec


class TargetOptions(MethodOptions):
    """Options of a method that adapts a set of linear layers."""

    target_modules: list[str] | None = Field(
        None, description="Default: every linear layer of the blocks for generation, attention query/value for "
        "classification (see targets.py).",
    )

# Fallbacks when peft has no entry for an architecture (or its names no longer match the
# model, as for ViT in transformers 5): the first pattern whose modules all exist wins.
ATTENTION_QV = (("q_proj", "v_proj"), ("query", "value"), ("q", "v"), ("q_lin", "v_lin"), ("qkv",), ("c_attn",))
IA3_KVF = (
    ("k_proj", "v_proj", "down_proj"), ("k_proj", "v_proj", "fc2"), ("key", "value", "output.dense"),
    ("k", "v", "wo"), ("k_lin", "v_lin", "lin2"),
)
HEAD_NAMES = ("lm_head", "classifier", "score", "pooler", "qa_outputs", "cls")


def linear_names(model: Any) -> list[str]:
    """Leaf names of the linear layers inside the transformer blocks (heads excluded)."""
    from torch import nn

    names = set()
    for full, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and not any(h in full.split(".") for h in HEAD_NAMES):
            names.add(full.split(".")[-1])
    return sorted(names)


def _suffix_exists(model: Any, target: str) -> bool:
    return any(n == target or n.endswith("." + target) for n, _ in model.named_modules())


VALUE_PROJ = (("v_proj",), ("value",), ("v",), ("v_lin",))


def method_targets(model: Any, model_type: str, given: list[str] | None, mapping: str,
                   patterns: tuple[tuple[str, ...], ...] = ATTENTION_QV) -> list[str]:
    """Targets for one of the methods that adapt chosen layers (OFT, FourierFT, BEFT, ...):
    `given` (checked), else peft's own per-architecture default for that method (the constant
    TRANSFORMERS_MODELS_TO_<mapping>_TARGET_MODULES_MAPPING, the attention query and value for most,
    as peft's method comparison trains them) where the model has those modules, else the first of
    `patterns` it has."""
    if given:
        check_targets(model, given, "target_modules")
        return list(given)
    from peft.utils import constants

    mapped = getattr(constants, f"TRANSFORMERS_MODELS_TO_{mapping}_TARGET_MODULES_MAPPING", {}).get(model_type)
    if mapped and all(_suffix_exists(model, t) for t in mapped):
        return list(mapped)
    for pattern in patterns:
        if all(_suffix_exists(model, t) for t in pattern):
            return list(pattern)
    raise ModelError(
        f"no default target modules for a {model_type!r} model; set `target_modules`. "
        f"Linear modules it has: {', '.join(linear_names(model))}"
    )


def norm_names(model: Any) -> list[str]:
    """Leaf names of the normalisation layers (LayerNorm, RMSNorm, T5LayerNorm...), heads excluded:
    LN-tuning's default where peft has no entry for the architecture (BERT, ViT, T5)."""
    names = set()
    for full, mod in model.named_modules():
        cls = mod.__class__.__name__
        if full and (cls.endswith("Norm") or cls.endswith("LayerNorm")) and not any(
                h in full.split(".") for h in HEAD_NAMES):
            names.add(full.split(".")[-1])
    return sorted(names)


def check_targets(model: Any, targets: list[str], key: str) -> None:
    missing = [t for t in targets if not _suffix_exists(model, t)]
    if missing:
        raise ModelError(
            f"{key}: {missing} not found in the model. Linear modules it has: {', '.join(linear_names(model))}"
        )


def lora_targets(model: Any, model_type: str, task: str, given: list[str] | None) -> list[str]:
    if given:
        check_targets(model, given, "target_modules")
        return list(given)
    if spec(task).generative:
        names = linear_names(model)
        if names:
            return names
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA_TARGETS

    mapped = LORA_TARGETS.get(model_type)
    if mapped and all(_suffix_exists(model, t) for t in mapped):
        return list(mapped)
    for pattern in ATTENTION_QV:
        if all(_suffix_exists(model, t) for t in pattern):
            return list(pattern)
    names = linear_names(model)
    if not names:
        raise ModelError(f"no linear layers found in a {model_type!r} model; set `target_modules`")
    return names


def ia3_targets(
    model: Any, model_type: str, given: list[str] | None, given_ff: list[str] | None
) -> tuple[list[str], list[str]]:
    if given:
        check_targets(model, given, "target_modules")
        ff = list(given_ff or [])
        if any(f not in given for f in ff):
            raise ModelError(f"feedforward_modules {ff} must be a subset of target_modules {given}")
        return list(given), ff
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as IA3_FF
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3_TARGETS

    mapped = IA3_TARGETS.get(model_type)
    if mapped and all(_suffix_exists(model, t) for t in mapped):
        return list(mapped), list(IA3_FF.get(model_type, []))
    for k, v, ff in IA3_KVF:
        if all(_suffix_exists(model, t) for t in (k, v, ff)):
            return [k, v, ff], [ff]
    raise ModelError(
        f"IA3 has no default target modules for {model_type!r}; set `target_modules` and "
        f"`feedforward_modules`. Linear modules it has: {', '.join(linear_names(model))}"
    )


def layer_widths(model: Any, targets: list[str]) -> list[tuple[str, int, int]]:
    """(name, in_features, out_features) of each linear layer the targets select, as peft matches
    them (the full name or its dotted suffix); GPT-2's Conv1D stores its weight as (in, out)."""
    from torch import nn

    out = []
    for name, mod in model.named_modules():
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        if isinstance(mod, nn.Linear):
            out.append((name, mod.in_features, mod.out_features))
        elif type(mod).__name__ == "Conv1D":
            out.append((name, mod.weight.shape[0], mod.weight.shape[1]))
    return out


def refuse_unless(method: str, layers: list[tuple[str, int, int]], fits: Callable[[int, int], bool],
                  why: str) -> None:
    """Preflight: MethodNotApplicable naming the targeted layers whose (in, out) widths do not fit."""
    bad = [f"{n} ({i}->{o})" for n, i, o in layers if not fits(i, o)]
    if bad:
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        raise MethodNotApplicable(f"{method}: {why}; layers that do not fit: {', '.join(bad[:4])}{more}. "
                                  "Change the option, or leave those layers out with `target_modules`")
