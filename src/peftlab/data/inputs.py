"""A file a run never saw, read as the run reads its data: `peftlab predict` and `peftlab evaluate`.

The run's own data settings make the examples (its columns or chat format, prompt template,
system prompt, on_bad_rows), so a new file is encoded exactly as the run's test split was.
Prediction rows may lack the target (`need_target=False`); a file in another layout than the
run's data is refused with what it holds (a chat file for a columns run, or the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.config.schema import DataConfig
from peftlab.data.conversations import chat_examples, file_columns
from peftlab.data.formats import detect_format
from peftlab.data.prepare import (
    Example,
    check_columns,
    column_examples,
    is_number,
    label_name,
    needed_columns,
)
from peftlab.data.sources import read_rows
from peftlab.errors import DataError
from peftlab.tasks.spec import spec


@dataclass
class InputRows:
    """A new file read as a run reads its data (`read_examples`): the usable rows as read, their
    examples, the rows skipped and the file's format."""

    source: str  # the file as read (its resolved path)
    rows: list[dict[str, Any]]
    examples: list[Example]
    skipped: list[str]
    format: str
    notes: list[str] = field(default_factory=list)


def read_examples(cfg: DataConfig, task: str, source: str, base: Path | None = None, need_target: bool = True,
                  labels: list[str] | None = None) -> InputRows:
    """Rows of a file the run never saw, as the run's own data settings make examples of them
    (its columns or chat format, prompt template, on_bad_rows). `need_target=False` (prediction):
    targets may be missing. `labels` (classification): the run's classes, which gold labels map to.

    A file in another layout than the run's data gets a DataError saying what it holds."""
    skipped: list[str] = []
    rs = read_rows(source, base, cfg.on_bad_rows)
    skipped += rs.skipped
    found, why = detect_format(set(file_columns(rs)), rs.rows[:20])
    notes: list[str] = []
    if cfg.chat and not cfg.as_chat:
        if found == "columns" and cfg.format == "auto":
            raise DataError(f"{rs.source}: the run was trained on conversations, but this file holds none ({why}); "
                            f"give it in a chat format (messages, sharegpt, alpaca or prompt-completion)")
        fmt = found if found != "columns" else cfg.format
        if cfg.format not in ("auto", fmt):
            notes.append(f"{rs.source}: {fmt} data ({why}), the run's data were {cfg.format}: both are read as "
                         f"conversations, rendered with the run's chat template")
        pairs = chat_examples(rs, cfg, fmt, skipped, need_reply=need_target)
    else:
        try:
            check_columns(rs, needed_columns(cfg, task, need_target))
        except DataError as e:
            looks = f" The file looks like {found} data ({why}); the run was trained on columns." if found != "columns" else ""
            raise DataError(f"{e}.{looks}") from None
        fmt = "columns"
        pairs = (chat_examples(rs, cfg, fmt, skipped, need_reply=need_target) if cfg.as_chat
                 else column_examples(rs, cfg, task, skipped, need_target))
    if not pairs:
        first = f"; first: {skipped[0]}" if skipped else ""
        raise DataError(f"{rs.source}: no usable rows ({len(skipped)} skipped{first})")
    examples = [ex for _, ex in pairs]
    if labels is not None and spec(task).target_key == "label":
        _label_ids(examples, labels)
    return InputRows(rs.source, [r for r, _ in pairs], examples, skipped, fmt, notes)


def _label_ids(examples: list[Example], labels: list[str]) -> None:
    """Gold labels as the run's class ids; a class the run never learnt is an error."""
    numeric = all(is_number(e.label) for e in examples if e.label is not None)
    index = {n: i for i, n in enumerate(labels)}
    for e in examples:
        if e.label is None:
            continue
        name = label_name(e.label, numeric)
        if name not in index:
            raise DataError(f"{e.where}: label {name!r} is not one the run was trained on ({', '.join(labels)})")
        e.label = index[name]
