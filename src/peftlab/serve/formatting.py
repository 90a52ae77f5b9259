"""Rows as the model will see them: the prompt template applied by the engine's own data code
(`peftlab.data.prepare`; conversations by `peftlab.data.conversations`), then the task's encoding (`peftlab.tasks.build.load_task`: for
causal-lm the `PromptFormatter`, with the chat template when the tokenizer has one), decoded
back to text with its special tokens, and counted in tokens. The Datasets page previews a
mapping with it; the Playground shows the formatted prompt of an input with it.

Tokenizers are loaded once per (model, task, lengths, system prompt) and kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from peftlab.config.schema import ExperimentConfig
from peftlab.data.prepare import Example, _format_source, column_examples, template_fields
from peftlab.data.sources import RowSet
from peftlab.tasks.spec import spec

_TASKS: OrderedDict[tuple, Any] = OrderedDict()
_LOCK = threading.Lock()


def task_for(cfg: ExperimentConfig, base_dir: Path | None = None) -> Any:
    """The experiment's task object (tokenizer loaded), cached; ModelError when the model does
    not fit the task (`preflight._task`, the preflight's own check)."""
    from peftlab.models import resolve_model
    from peftlab.train.preflight import _task

    t = cfg.training
    key = (cfg.model.path, str(base_dir), cfg.task, cfg.data.system_prompt, t.max_source_length,
           t.max_target_length, cfg.model.revision)
    with _LOCK:
        if key in _TASKS:
            _TASKS.move_to_end(key)
            return _TASKS[key]
        rm = _tokenizer_folder(cfg, base_dir) or resolve_model(cfg.model, base_dir)
        task = _task(cfg, rm, SimpleNamespace(labels=None))
        _TASKS[key] = task
        while len(_TASKS) > 8:
            _TASKS.popitem(last=False)
        return task


def _tokenizer_folder(cfg: ExperimentConfig, base_dir: Path | None) -> Any:
    """A GGUF model's own folder when it holds its config and tokenizer: formatting needs the
    tokenizer only, which `resolve_model` would take from the folder too, after de-quantizing the
    whole model (seconds, and a float32 copy on disk) just to show a preview. None otherwise."""
    from peftlab.models.loading import ResolvedModel
    from peftlab.paths import resolve

    try:
        folder = resolve(cfg.model.path, "models", base_dir)
    except (OSError, ValueError):
        return None
    if (folder is None or not folder.is_dir() or not any(folder.glob("*.gguf"))
            or not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file()):
        return None
    return ResolvedModel(str(folder), True)


def template_notes(template: str | None) -> list[str]:
    notes = []
    if template and "\\n" in template:
        notes.append("The template holds a backslash followed by n (\\n), which the model sees as those two "
                     "characters, not as a line break. Press Enter in the template for a new line.")
    return notes


def _decode(tok: Any, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def encode_example(cfg: ExperimentConfig, task: Any, ex: Example) -> dict[str, Any]:
    """One example as the model sees it (the task's own `encode`; for causal-lm without a target,
    its `prompt`): prompt and target text with their special tokens, token counts, truncation."""
    tok = task.tok
    out: dict[str, Any] = {"source": ex.source}
    if spec(cfg.task).decoder_only and ex.target is None:
        ids = list(task.prompt(ex.source))
        return {**out, "prompt": _decode(tok, ids), "prompt_tokens": len(ids)}
    before = task.truncated
    enc = task.encode(ex)
    out["truncated"] = task.truncated > before
    task.truncated = before
    ids, labels = list(enc["input_ids"]), enc.get("labels")
    if spec(cfg.task).decoder_only:
        n = sum(1 for x in labels if x == -100)
        out.update(prompt=_decode(tok, ids[:n]), prompt_tokens=n, target=_decode(tok, ids[n:]),
                   target_tokens=len(ids) - n)
    else:
        out.update(prompt=_decode(tok, ids), prompt_tokens=len(ids))
        if isinstance(labels, list):
            out.update(target=_decode(tok, labels), target_tokens=len(labels))
        elif ex.label is not None:
            out["label"] = str(ex.label)
    return out


def preview_rows(cfg: ExperimentConfig, rows: list[dict[str, Any]], source: str,
                 base_dir: Path | None = None) -> dict[str, Any]:
    """The first rows of a data set through the experiment's data section and task."""
    s = spec(cfg.task)
    if not s.text_input:
        return {"rows": [], "skipped": [], "notes": ["image inputs: nothing to format"], "chat_template": False}
    task = task_for(cfg, base_dir)
    skipped: list[str] = []
    data = cfg.data.model_copy(update={"on_bad_rows": "skip"})
    rs = RowSet(source, rows)
    if data.chat:  # conversations (messages, sharegpt, ...), as the run builds them
        from peftlab.data.conversations import chat_examples, resolve_format

        exs = [ex for _, ex in chat_examples(rs, data, resolve_format(data, rs)[0], skipped)]
    else:
        exs = [ex for _, ex in column_examples(rs, data, cfg.task, skipped)]
    return {"rows": [encode_example(cfg, task, e) for e in exs], "skipped": skipped,
            "notes": template_notes(cfg.data.prompt), "chat_template": bool(getattr(task.tok, "chat_template", None)),
            "max_source_length": cfg.training.max_source_length, "max_target_length": cfg.training.max_target_length,
            "used": "template" if cfg.data.prompt else "input columns"}


def format_input(cfg: ExperimentConfig, text: str | None, inputs: dict[str, Any] | None,
                 base_dir: Path | None = None) -> dict[str, Any]:
    """One playground input as the model sees it (the experiment's template and task)."""
    d = cfg.data
    cols = template_fields(d.prompt) if d.prompt else ([d.input] if isinstance(d.input, str) else list(d.input or []))
    row = dict(inputs or {})
    if text is not None and len(cols) == 1:
        row[cols[0]] = text
    missing = [c for c in cols if c not in row]
    if missing:
        from peftlab.errors import DataError

        raise DataError(f"give a value for {', '.join(missing)} (the experiment's input columns: {', '.join(cols)})")
    task = task_for(cfg, base_dir)
    out = encode_example(cfg, task, Example(source=_format_source(d, row)))
    out["chat_template"] = bool(getattr(task.tok, "chat_template", None))
    return out
