"""Rows of a file as conversation examples: which format a file is, and its rows converted.

`prepare.py` reads and splits the data; when the experiment's data are conversations
(`DataConfig.chat`: a chat `data.format`, `auto` with no columns named, or `as_chat`), each
file's rows come through here. The format is decided per file (`resolve_format`): an explicit
`data.format` is used as given; `auto` is detected from the file's columns and values
(`formats.detect_format`) and said in a note that `peftlab run` prints before training, so a
validation file in another layout than the training file is caught (and named) there.

Every converted row becomes an `Example` whose `conversation` is the whole conversation (what
training encodes, every assistant turn with loss), `target`/`references` its last assistant
reply (what evaluation generates and scores) and `source` the conversation before that reply
as text (what predictions files show as the input).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peftlab.config.schema import CHAT_FORMATS, DataConfig
from peftlab.data.example import Example
from peftlab.data.formats import (
    BadRow,
    Conversation,
    context_text,
    detect_format,
    split_last_assistant,
    to_conversation,
)
from peftlab.data.mappings import references, template_conversation
from peftlab.data.sources import RowSet
from peftlab.errors import DataError

_SAMPLE = 20  # rows detect_format looks at (it samples the first rows: the files' order is theirs)


def file_columns(rs: RowSet, limit: int = 1000) -> list[str]:
    """The columns of a file's first rows, in order of appearance."""
    seen: dict[str, None] = {}
    for r in rs.rows[:limit]:
        seen.update(dict.fromkeys(k for k in r if k != "__line__"))
    return list(seen)


def resolve_format(cfg: DataConfig, rs: RowSet) -> tuple[str, str | None]:
    """The row format of one file and, where it was detected, a note saying what was found.

    `columns` for column data (also under `as_chat`: its columns are mapped to a conversation);
    the configured chat format as given; under `auto`, the detected one. A file `auto` finds no
    conversations in is an error when no columns are named (there is nothing else to read), and
    a hint when they are but the file looks like chat data."""
    if cfg.as_chat or cfg.format == "columns":
        return "columns", None
    cols = file_columns(rs)
    fmt, why = detect_format(set(cols), rs.rows[:_SAMPLE])
    if cfg.format in CHAT_FORMATS:
        if fmt not in (cfg.format, "columns"):
            raise DataError(f"{rs.source}: data.format is {cfg.format}, but the file holds {fmt} data ({why}); set "
                            f"data.format: {fmt} (or auto), or convert the file")
        return cfg.format, None
    if not cfg.chat:  # auto, but columns are named: those columns, as before chat formats
        if fmt == "columns":
            return "columns", None
        return "columns", (f"data.format auto: {rs.source} looks like {fmt} data ({why}), but data.input/prompt/"
                           f"target are named, so those columns are used; to train on the conversations, remove "
                           f"them (or set data.format: {fmt})")
    if fmt == "columns":
        raise DataError(
            f"{rs.source}: data.format auto found no chat data ({why}). Columns in the file: "
            f"{', '.join(cols) or '(none)'}. Name the columns to use (data.input or data.prompt, and data.target), "
            f"or set data.format to one of {', '.join(CHAT_FORMATS)}"
        )
    return fmt, f"data.format auto: {rs.source}: {fmt} ({why})"


def input_template(cfg: DataConfig) -> str:
    """The user turn of `as_chat` as a {column} template: `prompt`, or the input column(s) laid out
    as `prepare` lays them out for the columns path (one column as is, several as `name: value`)."""
    if cfg.prompt:
        return cfg.prompt
    cols = [cfg.input] if isinstance(cfg.input, str) else list(cfg.input or [])
    if len(cols) == 1:
        return "{" + cols[0] + "}"
    return "\n".join(f"{c}: {{{c}}}" for c in cols)


def converter(cfg: DataConfig, fmt: str, need_reply: bool = True) -> Callable[[dict[str, Any], str], Conversation]:
    """(row, where) -> Conversation for the file's format, raising BadRow for a bad row."""
    if fmt == "columns":  # as_chat
        prompt, target = input_template(cfg), cfg.target
        if need_reply:
            return lambda row, where: template_conversation(row, prompt, target, where)
        return lambda row, where: template_conversation(row, prompt, None, where)
    return lambda row, where: to_conversation(row, fmt, where, need_reply)


def chat_examples(rs: RowSet, cfg: DataConfig, fmt: str, skipped: list[str],
                  need_reply: bool = True) -> list[tuple[dict[str, Any], Example]]:
    """(row, Example) of every row that converts; bad rows raise, or with data.on_bad_rows: skip
    are added to `skipped` as "file:line: why". `need_reply=False`: rows may lack the reply
    (prediction); a conversation ending with an assistant turn still has it held out."""
    convert = converter(cfg, fmt, need_reply)
    out = []
    for row in rs.rows:
        where = f"{rs.source}:{row.get('__line__', '?')}"
        try:
            conv = convert(row, where)
        except BadRow as e:
            if cfg.on_bad_rows != "skip":
                raise
            skipped.append(f"{e.where}: {e.why}")
            continue
        if conv.turns[-1].role == "assistant":
            context, reply = split_last_assistant(conv)
            refs = references(row, cfg.target, where) if fmt == "columns" and cfg.target else [reply]
        else:
            context, reply, refs = conv, None, []
        out.append((row, Example(source=context_text(context), target=reply, references=refs, where=where,
                                 conversation=conv)))
    return out
