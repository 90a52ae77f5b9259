"""Column data mapped to a conversation at run time: a `{column}` prompt becomes the user
turn and a target column the assistant turn.

This is how plain column data sets (input/target, today's `columns` format) join the chat
path without rewriting their files, and `samsum_conversation` is the worked example:
a SAMSum row (a chat `document` -- `dialogue` in the hub original -- and its `summary`)
becomes "Summarize this dialogue" + the dialogue as the user turn and the summary as the
assistant reply. The experiment-file equivalent would be:

    data:
      format: columns
      prompt: "Summarize this dialogue:\\n\\n{document}"
      target: summary
"""

from __future__ import annotations

import string
from typing import Any

from peftlab.data.formats import BadRow, Conversation, Turn

SAMSUM_PROMPT = "Summarize this dialogue:\n\n{dialogue}"


def template_conversation(
    row: dict[str, Any], prompt: str, target: str | None, where: str, system: str | None = None
) -> Conversation:
    """A two-turn conversation: `prompt` filled from the row's columns, then the `target` column.

    `target=None` (prediction on rows without targets): the user turn alone. A target cell that
    is a list (several references) gives its first non-empty item as the reply. Raises BadRow (a
    DataError naming `where`) when a column is empty, so `convert_rows` can skip the row; bind
    the arguments with a lambda to pass it as a converter. This is `data.as_chat: true`.
    """
    fields = [f for _, f, _, _ in string.Formatter().parse(prompt) if f]
    values = {f: _cell(row, f, where) for f in fields}
    user = prompt.format_map(values).strip()
    if target is None:
        return Conversation(system or None, [Turn("user", user)], where)
    reply = references(row, target, where)[0]
    return Conversation(system or None, [Turn("user", user), Turn("assistant", reply)], where)


def references(row: dict[str, Any], target: str, where: str) -> list[str]:
    """The non-empty texts of a target cell: one, or each item of a list (multi-reference rows)."""
    v = row.get(target)
    if isinstance(v, list):
        refs = [str(x).strip() for x in v if x is not None and str(x).strip()]
        if refs:
            return refs
    return [_cell(row, target, where)]


def samsum_conversation(row: dict[str, Any], where: str) -> Conversation:
    """A SAMSum row as (user: "Summarize this dialogue:" + dialogue, assistant: summary).

    Accepts the dialogue under `dialogue` (the hub data set) or `document` (the copy in
    shared/data/samsum), so the same mapping serves both.
    """
    col = "dialogue" if "dialogue" in row else "document"
    return template_conversation(row, SAMSUM_PROMPT.replace("{dialogue}", "{" + col + "}"), "summary", where)


def _cell(row: dict[str, Any], col: str, where: str) -> str:
    v = row.get(col)
    text = "" if v is None or isinstance(v, list | dict) or (isinstance(v, float) and v != v) else str(v).strip()
    if not text:
        cols = ", ".join(k for k in row if k != "__line__")
        raise BadRow(where, f"column {col!r} is empty or missing (columns in the row: {cols or 'none'}); fill it in")
    return text
