"""Instruction and chat data formats, normalised to one `Conversation` shape.

Rows come from `sources.read_rows` (dicts with a `__line__` key). Each supported format
maps to the same `Conversation` (an optional system message, then user/assistant turns
that alternate, starting with user and ending with assistant), so the chat encoder, the
evaluation view and the reports need to know one shape only:

- `messages`: OpenAI style, a `messages` list of `{role, content}` (system/user/assistant).
- `sharegpt`: a `conversations` list of `{from, value}` (human/gpt/system and aliases),
  with an optional row-level `system` string.
- `alpaca`: `instruction`, optional `input`, `output`, optional `system`.
- `prompt-completion`: TRL's `prompt` and `completion`, each a string or a messages list.
  Assistant turns inside the prompt are context: they carry no loss, as in TRL.
- `columns`: today's input/target columns; nothing to convert here (see prepare.py).

Contents are stripped of surrounding whitespace: chat templates put their own separators
around a turn, and a leading newline would merge with the header's newline into one token,
so the prompt tokens would no longer be a prefix of the training tokens.
Every problem is a DataError naming `file:line`, the turn at fault, and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from peftlab.errors import DataError

DATA_FORMATS = ("messages", "sharegpt", "alpaca", "prompt-completion", "columns")
MESSAGE_ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "bot": "assistant", "model": "assistant",
    "system": "system",
}
_SKIP_HINT = "(fix the row, or set data.on_bad_rows: skip)"
_SAMPLE = 20  # rows looked at by detect_format


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str
    loss: bool = True  # an assistant turn the model learns; False for context (a prompt's replies)


@dataclass
class Conversation:
    system: str | None
    turns: list[Turn] = field(default_factory=list)
    where: str = ""  # "file:line", for messages

    def messages(self) -> list[dict[str, str]]:
        """The conversation as chat-template messages (system first when there is one)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [{"role": t.role, "content": t.content} for t in self.turns]


class BadRow(DataError):
    """One row cannot become a conversation; `convert_rows` can skip it (data.on_bad_rows)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why} {_SKIP_HINT}")
        self.where = where
        self.why = why


class _RowProblem(Exception):
    """A row-level problem found by a helper that does not know `where`."""


@dataclass
class _Item:
    role: str
    content: str
    label: str  # e.g. "messages[2]", for messages
    loss: bool = True


# ---------------------------------------------------------------- detection


def detect_format(columns: set[str], sample_rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Guess the data format from column names and the values in the first rows.

    Values decide, not names alone: a `messages` column of plain strings (a CSV column,
    say) is not the messages format. Returns (format, one-line reason); `columns` when
    nothing matches, so the current input/target behaviour stays the default.
    """
    rows = sample_rows[:_SAMPLE]

    def share(col: str, ok: Any) -> tuple[int, int]:
        vals = [r[col] for r in rows if not _missing(r.get(col))]
        return sum(1 for v in vals if ok(v)), len(vals)

    def holds(col: str, ok: Any) -> bool:
        good, n = share(col, ok)
        return good > 0 and good * 2 >= n

    def counted(col: str, ok: Any) -> str:
        good, n = share(col, ok)
        return f"{good} of {n} sampled rows"

    if "messages" in columns and holds("messages", _is_role_list):
        return "messages", f"column 'messages' holds lists of {{role, content}} ({counted('messages', _is_role_list)})"
    if "conversations" in columns and holds("conversations", _is_from_list):
        return "sharegpt", (
            f"column 'conversations' holds lists of {{from, value}} ({counted('conversations', _is_from_list)})"
        )
    if {"prompt", "completion"} <= columns and holds("prompt", _is_text_or_roles) and holds(
        "completion", _is_text_or_roles
    ):
        kind = "lists of {role, content}" if holds("prompt", _is_role_list) else "strings"
        return "prompt-completion", f"columns 'prompt' and 'completion' hold {kind} (TRL prompt-completion)"
    if {"instruction", "output"} <= columns and holds("instruction", _is_scalar_text) and holds(
        "output", _is_scalar_text
    ):
        names = "'instruction', 'input' and 'output'" if "input" in columns else "'instruction' and 'output'"
        return "alpaca", f"columns {names} hold text (alpaca)"
    why = "no messages, conversations, prompt/completion or instruction/output columns with matching values"
    for col, shape in (("messages", "{role, content}"), ("conversations", "{from, value}")):
        if col in columns:
            why = f"column {col!r} does not hold lists of {shape} (e.g. {_what(_first(rows, col))})"
            break
    return "columns", why + "; using the input/target columns as they are"


def _is_role_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) and "role" in m and "content" in m for m in v)


def _is_from_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) and "from" in m and "value" in m for m in v)


def _is_text_or_roles(v: Any) -> bool:
    return isinstance(v, str) or _is_role_list(v)


def _is_scalar_text(v: Any) -> bool:
    return isinstance(v, str | int | float) and not isinstance(v, bool)


def _first(rows: list[dict[str, Any]], col: str) -> Any:
    return next((r[col] for r in rows if not _missing(r.get(col))), None)


# ---------------------------------------------------------------- conversion


def to_conversation(row: dict[str, Any], fmt: str, where: str, need_reply: bool = True) -> Conversation:
    """Convert one row of format `fmt` to a checked Conversation; BadRow (a DataError) names `where`.

    `need_reply=False` (prediction on new rows): the conversation may end with a user turn, or an
    alpaca/prompt-completion row may lack its output/completion; that is the turn to generate."""
    try:
        return _convert(row, fmt, where, need_reply)
    except _RowProblem as e:
        raise BadRow(where, str(e)) from None


Converter = Callable[[dict[str, Any], str], Conversation]  # (row, where) -> Conversation, raising BadRow


def convert_rows(
    rows: list[dict[str, Any]], fmt: str | Converter, source: str, on_bad_rows: str = "error", need_reply: bool = True
) -> tuple[list[Conversation], list[str]]:
    """Convert rows read from `source` with a format name or a converter (see mappings.py).

    With on_bad_rows="skip", bad rows become "file:line: why" strings in the second list
    instead of raising, as `sources.read_rows` does for unreadable lines.
    """
    convert: Converter = fmt if callable(fmt) else (lambda row, where: to_conversation(row, fmt, where, need_reply))
    out: list[Conversation] = []
    skipped: list[str] = []
    for row in rows:
        try:
            out.append(convert(row, f"{source}:{row.get('__line__', '?')}"))
        except BadRow as e:
            if on_bad_rows != "skip":
                raise
            skipped.append(f"{e.where}: {e.why}")
    return out, skipped


def split_last_assistant(conv: Conversation) -> tuple[Conversation, str]:
    """The evaluation view: the conversation before its last assistant turn (the prompt),
    and that turn's content (the reference the model's reply is scored against)."""
    idx = max((i for i, t in enumerate(conv.turns) if t.role == "assistant"), default=None)
    if idx is None:
        raise ValueError(f"{conv.where}: the conversation has no assistant turn to hold out")
    return replace(conv, turns=list(conv.turns[:idx])), conv.turns[idx].content


def context_text(conv: Conversation) -> str:
    """A conversation as one text, for predictions files and reports (what the 'input' was):
    a lone user turn is its content, as a `columns` input would be; longer ones are spelled out
    turn by turn ("User: ...", "Assistant: ...")."""
    if len(conv.turns) == 1 and not conv.system:
        return conv.turns[0].content
    head = [f"System: {conv.system}"] if conv.system else []
    return "\n".join(head + [f"{t.role.capitalize()}: {t.content}" for t in conv.turns])


# per format: the key its rows cannot do without, and the shape to write a row of another format in
_KEY = {"messages": "messages", "sharegpt": "conversations", "alpaca": "instruction", "prompt-completion": "prompt"}
_AS = {"messages": '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}',
       "sharegpt": '{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}',
       "alpaca": '{"instruction": ..., "output": ...}', "prompt-completion": '{"prompt": ..., "completion": ...}'}
_TURN_FIX = "'from' to 'role' (human -> user, gpt -> assistant) and 'value' to 'content'"


def _other_format(row: dict[str, Any], fmt: str) -> str | None:
    """For a row without `fmt`'s key that holds another chat format: what it holds, and the fix."""
    if fmt not in _KEY or not _missing(row.get(_KEY[fmt])):
        return None
    signs = [("messages", "a 'messages' list of {role, content}", _is_role_list(row.get("messages"))),
             ("sharegpt", "a 'conversations' list of {from, value}", _is_from_list(row.get("conversations"))),
             ("prompt-completion", "'prompt' and 'completion'",
              _is_text_or_roles(row.get("prompt")) and _is_text_or_roles(row.get("completion"))),
             ("alpaca", "'instruction' and 'output'",
              _is_scalar_text(row.get("instruction")) and _is_scalar_text(row.get("output")))]
    other, shows = next(((f, why) for f, why, holds in signs if holds), ("", ""))
    fix = (f"rename 'conversations' to 'messages', and in each turn {_TURN_FIX}" if (other, fmt) == ("sharegpt",
           "messages") else f"write it as {_AS[fmt]}")
    return (f"this row holds {other} data ({shows}), not {fmt} (data.format: {fmt}); {fix}, or move the {other} "
            "rows to a file of their own") if other else None


def _convert(row: dict[str, Any], fmt: str, where: str, need_reply: bool = True) -> Conversation:
    if other := _other_format(row, fmt):
        raise _RowProblem(other)
    if fmt == "messages":
        items = _parse_list(row.get("messages"), "messages", "role", "content", _message_role)
        return _build(items, None, where, need_reply)
    if fmt == "sharegpt":
        items = _parse_list(row.get("conversations"), "conversations", "from", "value", _sharegpt_role)
        return _build(items, _text_field(row, "system"), where, need_reply)
    if fmt == "alpaca":
        instruction = _text_field(row, "instruction")
        if not instruction:
            raise _RowProblem("empty or missing 'instruction'; alpaca rows need the task to perform")
        extra = _text_field(row, "input")
        user = f"{instruction}\n\n{extra}" if extra else instruction
        items = [_Item("user", user, "'instruction'")]
        reply = _text_field(row, "output")
        if need_reply or reply is not None:
            items.append(_Item("assistant", reply or "", "'output'"))
        return _build(items, _text_field(row, "system"), where, need_reply)
    if fmt == "prompt-completion":
        prompt = _side(row, "prompt", "user", loss=False)
        if not need_reply and _missing(row.get("completion")):
            return _build(prompt, None, where, need_reply)
        return _build(prompt + _side(row, "completion", "assistant", loss=True), None, where)
    if fmt == "columns":
        raise ValueError("format 'columns' is not converted: prepare.py reads its input/target columns")
    raise ValueError(f"unknown data format {fmt!r}; expected one of {', '.join(DATA_FORMATS)}")


def _side(row: dict[str, Any], key: str, role: str, loss: bool) -> list[_Item]:
    """One side of a prompt-completion row: a plain string, or a list of messages."""
    v = row.get(key)
    if isinstance(v, list):
        items = _parse_list(v, key, "role", "content", _message_role)
        for it in items:
            it.loss = loss
        return items
    text = _text_field(row, key)
    if text is None:
        raise _RowProblem(f"empty or missing {key!r}; prompt-completion rows need a {key} string or a list "
                          f"of {{role, content}} messages")
    return [_Item(role, text, repr(key), loss)]


def _message_role(v: Any) -> str | None:
    return v if v in MESSAGE_ROLES else None


def _sharegpt_role(v: Any) -> str | None:
    return SHAREGPT_ROLES.get(v.strip().lower()) if isinstance(v, str) else None


def _parse_list(value: Any, key: str, role_key: str, content_key: str, role_of: Any) -> list[_Item]:
    """Check that `value` is a list of {role_key, content_key} dicts and read it."""
    shape = f"{{{role_key}, {content_key}}}"
    if not isinstance(value, list):
        got = "no such column" if value is None else _what(value)
        raise _RowProblem(f"{key!r} must be a list of {shape} objects, found {got}")
    if not value:
        raise _RowProblem(f"{key!r} is an empty list; it needs at least a user and an assistant turn")
    items = []
    for i, m in enumerate(value):
        label = f"{key}[{i}]"
        if not isinstance(m, dict):
            raise _RowProblem(f"{label} must be a {shape} object, found {_what(m)}")
        for k in (role_key, content_key):
            if k not in m:
                keys = ", ".join(map(str, m)) or "none"
                hint = f"; these are sharegpt's turn keys: rename {_TURN_FIX}" if role_key == "role" and {
                    "from", "value"} <= set(m) else ""
                raise _RowProblem(f"{label} is a dict without {k!r} (its keys: {keys}); each turn needs {shape}{hint}")
        role = role_of(m[role_key])
        if role is None:
            allowed = ", ".join(MESSAGE_ROLES if role_key == "role" else SHAREGPT_ROLES)
            raise _RowProblem(f"{label} has unknown {role_key} {m[role_key]!r}; allowed: {allowed}")
        items.append(_Item(role, _content(m[content_key], f"{label}.{content_key}"), label))
    return items


def _content(v: Any, label: str) -> str:
    """A turn's text: a string, or OpenAI-style text parts [{type: text, text}] joined."""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, list):
        parts = []
        for j, p in enumerate(v):
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                kind = p.get("type") if isinstance(p, dict) else _what(p)
                raise _RowProblem(f"{label}[{j}] is a {kind!r} part; only text parts {{type: text, text}} are supported")
            parts.append(p["text"])
        return "\n".join(parts).strip()
    raise _RowProblem(f"{label} must be a string, found {_what(v)}")


def _build(items: list[_Item], row_system: str | None, where: str, need_reply: bool = True) -> Conversation:
    """Check the order of turns and assemble the Conversation.

    After an optional system message, user and assistant alternate starting with user, and
    the last turn is an assistant reply: that is what training learns and evaluation holds out
    (with `need_reply=False` a final user turn is allowed: the reply is what prediction makes).
    """
    system = row_system or None
    if items and items[0].role == "system":
        if system:
            raise _RowProblem(f"both a 'system' field and a system turn ({items[0].label}); keep one")
        system = items[0].content or None
        items = items[1:]
    turns: list[Turn] = []
    for pos, it in enumerate(items):
        if it.role == "system":
            raise _RowProblem(f"{it.label} is a system message after other turns; a system message may only "
                              f"come first (move it to the start or merge it into the first one)")
        want = "user" if pos % 2 == 0 else "assistant"
        if it.role != want:
            prev = f"after the {items[pos - 1].role} turn {items[pos - 1].label}" if pos else "first"
            raise _RowProblem(f"turn {it.label} is {_a(it.role)} turn but {_a(want)} turn must come {prev}; "
                              f"turns must alternate user, assistant, user, ... starting with user")
        if not it.content:
            raise _RowProblem(f"{it.label} ({it.role}) has empty content; {_a(it.role)} turn needs text")
        turns.append(Turn(it.role, it.content, it.loss if it.role == "assistant" else True))  # type: ignore[arg-type]
    if not turns:
        raise _RowProblem("no user or assistant turns; the conversation needs at least a user turn")
    if not need_reply:
        return Conversation(system, turns, where)
    if not any(t.role == "assistant" for t in turns):
        raise _RowProblem("no assistant turn; the conversation needs at least one assistant reply to learn from")
    if turns[-1].role != "assistant":
        raise _RowProblem(f"turn {items[-1].label} is a trailing user turn with no assistant reply; end the "
                          f"conversation with an assistant turn or drop the last user turn")
    return Conversation(system, turns, where)


def _text_field(row: dict[str, Any], key: str) -> str | None:
    """A row field as stripped text; None when missing or empty. Numbers become text."""
    v = row.get(key)
    if _missing(v):
        return None
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise _RowProblem(f"{key!r} must be text, found {_what(v)}")
    return str(v).strip() or None


def _a(role: str) -> str:
    return f"an {role}" if role == "assistant" else f"a {role}"  # "a user", "a system"


def _missing(v: Any) -> bool:
    """None, or a float NaN (how pandas/Parquet writers spell an empty cell)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _what(v: Any) -> str:
    """A short description of a value for messages: 'a string', 'a dict without ...'."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, str):
        return f"a string ({v[:30]!r}{'...' if len(v) > 30 else ''})"
    if isinstance(v, int | float):
        return f"a number ({v})"
    if isinstance(v, dict):
        return f"a dict with keys {', '.join(map(str, v)) or '(none)'}"
    if isinstance(v, list):
        return f"a list of {len(v)} item(s)" if v else "an empty list"
    return type(v).__name__
