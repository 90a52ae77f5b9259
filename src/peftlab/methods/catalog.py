"""The catalogue: every adapter type of the installed peft, offered or not, and why (`peftlab methods`).

peft's list of types (`peft.PeftType`) is read from the installed peft at run time, so a new
release's types show up here as "not yet offered" until a method (or a reason) is added. The
list is read from peft's source with `ast`, without importing peft (which imports torch): the
catalogue stays as cheap as the registry, for the command line, the report and the web service.

A type is offered when a registry method configures it (its `peft_type` trait, by default its
name in peft's spelling); the types peftlab deliberately leaves out carry the reason, checked on
tiny models (the reasons say what happens).
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError
from peftlab.methods import REGISTRY, Method
from peftlab.tasks.spec import TASK_NAMES

# Types not offered on purpose, and why (each tried on stories260k, BERT and T5 with peft 0.21).
NOT_OFFERED: dict[str, str] = {
    "MULTITASK_PROMPT_TUNING": "one soft prompt per task, shared across tasks: every example needs a task id "
                               "(peft refuses without: 'task_ids cannot be None'); peftlab trains one task per run",
    "POLY": "Polytropon: a library of LoRA modules routed per task, trained on several tasks at once: every example "
            "needs a task id ('task_ids should not be None'); peftlab trains one task per run",
    "XLORA": "X-LoRA: a learned mixture of several LoRA adapters trained beforehand; it needs those adapters and "
             "runs without the KV cache ('use_cache must be False')",
    "TRAINABLE_TOKENS": "trains the embeddings of chosen tokens only (new special tokens): not a fine-tuning method on "
                        "its own; LoRA's trainable_tokens option does it beside an adapter",
}
NOT_YET = "not yet offered by peftlab (new in this peft release, or not reviewed yet)"


@dataclass(frozen=True)
class Entry:
    """One peft type: the peftlab methods that configure it, or why there is none."""

    peft_type: str
    methods: tuple[str, ...]
    reason: str | None = None  # None when offered

    @property
    def offered(self) -> bool:
        return bool(self.methods)


def type_of(method: Method) -> str:
    """The peft type a method configures (its trait, else its name in peft's spelling)."""
    return method.peft_type or method.name.upper().replace("-", "_")


@functools.cache
def peft_types() -> tuple[str, ...]:
    """The members of the installed peft's `PeftType`, in peft's order, read from its source (no
    torch); by importing peft where the source is not where peft 0.21 keeps it."""
    if "peft" not in sys.modules:
        spec = importlib.util.find_spec("peft")
        if spec is not None and spec.origin:
            source = Path(spec.origin).parent / "utils" / "peft_types.py"
            names = _enum_members(source) if source.is_file() else []
            if names:
                return tuple(names)
    from peft import PeftType

    return tuple(t.value for t in PeftType)


def _enum_members(source: Path) -> list[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "PeftType":
            return [stmt.value.value for stmt in node.body
                    if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)]
    return []


def catalogue() -> list[Entry]:
    """Every type of the installed peft, in peft's order: offered (by which methods) or why not."""
    by_type: dict[str, list[str]] = {}
    for m in REGISTRY.values():
        by_type.setdefault(type_of(m), []).append(m.name)
    out = []
    for t in peft_types():
        methods = tuple(by_type.get(t, ()))
        out.append(Entry(t, methods, None if methods else NOT_OFFERED.get(t, NOT_YET)))
    return out


def render() -> str:
    """The `peftlab methods` listing: peftlab's methods, then the peft types not offered and why."""
    from tabulate import tabulate

    rows = [(m.name, m.family, type_of(m) if type_of(m) in peft_types() else "-", _tasks(m),
             "yes" if m.mergeable else "no", m.summary) for m in REGISTRY.values()]
    out = [tabulate(rows, headers=["method", "family", "peft type", "tasks", "merges", "what it does"]), ""]
    missing = [e for e in catalogue() if not e.offered]
    out.append(f"peft {_peft_version()} types not offered ({len(missing)} of {len(peft_types())}):")
    out += [f"  {e.peft_type}: {e.reason}" for e in missing]
    out.append("")
    out.append("peftlab methods NAME: one method in full (options, defaults, learning rates)")
    return "\n".join(out)


def describe(name: str) -> str:
    """One method in full: what it does and its paper, family, tasks, options with their defaults and
    descriptions, default learning rates per task, merging and 4-bit support. A peft type's name
    (LORA, POLY, ...) gives the methods that use it, or why none does."""
    if name in REGISTRY:
        return _describe_method(REGISTRY[name])
    key = name.upper().replace("-", "_")
    for e in catalogue():
        if e.peft_type == key:
            if e.offered:
                return f"peft type {key}: offered as {', '.join(e.methods)} (peftlab methods NAME for each)"
            return f"peft type {key}: not offered. {e.reason}"
    guess = difflib.get_close_matches(name, list(REGISTRY), n=1)
    hint = f" Did you mean {guess[0]!r}?" if guess else ""
    raise ConfigError(f"unknown method {name!r}.{hint} Known: {', '.join(REGISTRY)} (or a peft type name)")


def _describe_method(m: Method) -> str:
    doc = (sys.modules[m.apply.__module__].__doc__ if m.apply is not None else None) or _module_doc(m)
    lines = [f"{m.name}: {m.summary}", "", (doc or "").strip(), ""]
    peft_type = type_of(m) if type_of(m) in peft_types() else None
    lines += [
        f"family:        {m.family}",
        f"peft type:     {peft_type or '- (no adapter)'}",
        f"tasks:         {_tasks(m)}",
        f"merges:        {'yes: folds into the base weights (merged export)' if m.mergeable else 'no'}",
        f"4-bit base:    {'yes: quantize: 4bit (bitsandbytes NF4)' if m.quantizable else 'no'}",
    ]
    if m.virtual_tokens:
        lines.append(f"virtual tokens: {'key/value prefixes in every layer' if m.virtual_tokens == 'kv' else 'embeddings'}")
    lines += ["", "learning rate (default, per task):" if m.trains else "learning rate: none (trains nothing)"]
    lines += [f"  {task}: {m.learning_rate(task):g}" for task in TASK_NAMES if task in m.tasks and m.trains]
    fields = m.options.model_fields
    lines += ["", "options:" if fields else "options: none"]
    for key, f in fields.items():
        lines.append(f"  {key} = {_default(f)}  ({_type_name(f.annotation)})")
        if f.description:
            lines.append(f"      {f.description}")
    return "\n".join(lines)


def _module_doc(m: Method) -> str | None:
    import importlib

    module = f"peftlab.methods.{m.name.replace('-', '_')}"
    try:
        return importlib.import_module(module).__doc__
    except ImportError:
        return None


def _tasks(m: Method) -> str:
    return "all" if set(m.tasks) == set(TASK_NAMES) else ", ".join(t for t in TASK_NAMES if t in m.tasks)


def _default(f: Any) -> str:
    if f.is_required():
        return "(required)"
    return repr(f.get_default(call_default_factory=True))


def _type_name(annotation: Any) -> str:
    s = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    return s or str(annotation).replace("typing.", "")


def _peft_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("peft")
    except md.PackageNotFoundError:
        return "(not installed)"
