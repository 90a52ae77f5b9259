"""Pydantic's errors in the user's words: what a value must be and how to write it.

Pydantic says "Input should be greater than 0" or "Input should be a valid dictionary or
instance of TrainingConfig"; a user wants "must be 1 or more" or "must be a section of keys".
`plain` turns one error of `ValidationError.errors()` into that wording; `key_text` writes a
key path as the user would (`methods[1].search.learning_rate`), without pydantic's union
members (`function-after[_order(), SearchRange]`, `list[any]`) in it.

Used for the experiment file (`load.py`) and for a method's options (`peftlab.methods`).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

# loc parts pydantic adds for the members of a union or a validator wrapping a model: not keys
_MEMBER = re.compile(r"^(function-(after|before|wrap|plain)\[.*\]|[a-z]+\[.*\]|str|int|float|bool|list|dict)$")
_SEARCH_TAGS = ("range", "choices")  # the tags of MethodEntry.search's discriminated union


def clean_loc(loc: tuple) -> tuple:
    """`loc` without pydantic's union members and tags: the user's key path."""
    return tuple(p for p in loc if isinstance(p, int) or not (_MEMBER.match(p) or p in _SEARCH_TAGS))


def key_text(loc: tuple) -> str:
    """A key path as written: `methods[1].search.learning_rate`, `evaluation.metrics[0]`."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def merged(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`errors` with those of one value against each member of a union (`input: str | list[str]`
    given 5: "not text", "not a list") made one: "must be text or a list"."""
    out: list[dict[str, Any]] = []
    seen: dict[tuple, dict[str, Any]] = {}
    for err in errors:
        loc = clean_loc(err["loc"])
        if loc != tuple(err["loc"]) and err["type"] not in ("extra_forbidden", "missing", "value_error"):
            if loc in seen:
                seen[loc]["parts"].append(plain(err))
                continue
            err = seen[loc] = {**err, "type": "one_of", "parts": [plain(err)]}
        out.append(err)
    return out


def plain(err: dict[str, Any]) -> str:
    """One pydantic error as what the value must be, e.g. "must be 1 or more"."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "one_of":
        parts = err["parts"]
        heads = [re.split(r" \(|, |; ", p.removeprefix("must be "))[0] for p in parts]
        return parts[0] if len(parts) == 1 else f"must be {' or '.join(heads)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number (e.g. 8)"
    if kind in ("float_parsing", "float_type"):
        return "must be a number (e.g. 0.0001)"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("string_type",):
        return "must be text (in quotes if it looks like a number)"
    if kind == "greater_than":
        gt = ctx.get("gt")
        if isinstance(gt, int) and isinstance(value, int) and not isinstance(value, bool):
            return f"must be a whole number above {gt}; use {gt + 1} or more"
        return f"must be above {_num(gt)}"
    if kind == "greater_than_equal":
        return f"must be {_num(ctx.get('ge'))} or more"
    if kind == "less_than":
        return f"must be below {_num(ctx.get('lt'))}"
    if kind == "less_than_equal":
        return f"must be {_num(ctx.get('le'))} or less"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        guess = difflib.get_close_matches(str(value), allowed, n=1) if isinstance(value, str) else []
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        return f"must be one of {', '.join(allowed)}{hint}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a section of keys (`key: value` lines indented below it), not " + _what(value)
    if kind in ("list_type", "tuple_type"):
        example = f"; write [{value}]" if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
        return f"must be a list, e.g. [a, b], not {_what(value)}{example}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} {'entry' if n == 1 else 'entries'}"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} entries"
    if kind == "search_space":
        return "must be a list of choices, e.g. [4, 8, 16], or a range {low: ..., high: ..., log: true|false}"
    return str(err["msg"]).removeprefix("Value error, ")


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)  # 0.0 -> 0, 1e-05 stays 1e-05


def _what(v: Any) -> str:
    if v is None:
        return "empty"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, dict):
        return "a section"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return "text"
    return "a number" if isinstance(v, int | float) else type(v).__name__
