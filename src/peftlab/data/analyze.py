"""What a data file holds, before it is used: counts, column kinds, problems, a mapping guess.

Data-layer knowledge that needs no model: the web service shows it for an uploaded or
server-side data set, and checks a column mapping against it, but nothing here knows about
HTTP or the store.

    analyse(files, mapping)          counts, columns (kind, empty, distinct, length), preview,
                                     problems (duplicates, empty targets, too long, bad
                                     conversations), a guess, the detected data format and one
                                     conversation as the run will build it
    render_conversation(conv, tok)   that conversation as a model sees it in training: its
                                     chat template (or the plain layout), trained parts marked
    check_mapping(columns, mapping)  a mapping with every column checked (DataError if not)
    split_by_column(rows)            rows grouped by a `split` column (train/valid/test), if any
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftlab.data.formats import BadRow, Conversation, Turn, convert_rows, detect_format
from peftlab.data.sources import read_rows
from peftlab.errors import DataError
from peftlab.tasks.spec import CAUSAL_LM, SPECS

SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
TARGET_GUESSES = ("target", "output", "title", "summary", "answer", "response", "completion", "ref", "label_text")
LABEL_GUESSES = ("label", "labels", "class", "category", "sentiment")
CHARS_PER_TOKEN = 4  # rough estimate used for the "too long" check (no tokenizer needed)
PREVIEW_ROWS = 10


def split_by_column(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]] | None:
    """Rows grouped by split, when a `split` column names train (and validation/test) for every
    row; the split column itself and line numbers are dropped. None when there is no such column."""
    col = next((c for c in ("split", "Split", "SPLIT") if c in rows[0]), None)
    if col is None:
        return None
    values = {str(r.get(col, "")).strip().lower() for r in rows}
    if not values or not values <= set(SPLIT_NAMES) or "train" not in {SPLIT_NAMES[v] for v in values}:
        return None
    parts: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        clean = {k: v for k, v in r.items() if k not in ("__line__", col)}
        parts.setdefault(SPLIT_NAMES[str(r[col]).strip().lower()], []).append(clean)
    return parts


def check_mapping(columns: list[str] | set[str], mapping: dict[str, Any]) -> dict[str, Any]:
    """The mapping with every named column (and prompt placeholder) checked against `columns`."""
    cols = set(columns)
    for key in ("target", "label", "image"):
        v = mapping.get(key)
        if v and v not in cols:
            raise DataError(f"{key}: column {v!r} is not in the file; columns: {', '.join(sorted(cols))}")
    inputs = mapping.get("input") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    bad = [c for c in inputs if c not in cols]
    if bad:
        raise DataError(f"input: column(s) {bad} not in the file; columns: {', '.join(sorted(cols))}")
    if mapping.get("prompt"):
        from peftlab.data.prepare import template_fields

        missing = [f for f in template_fields(mapping["prompt"]) if f not in cols]
        if missing:
            raise DataError(f"prompt: placeholder(s) {missing} are not columns; columns: {', '.join(sorted(cols))}")
    return {"input": inputs, "prompt": mapping.get("prompt") or None, "target": mapping.get("target") or None,
            "label": mapping.get("label") or None, "image": mapping.get("image") or None,
            "system_prompt": mapping.get("system_prompt") or None}


_CACHE: dict[tuple[str, int, int], list[dict[str, Any]]] = {}


def _read(path: str) -> list[dict[str, Any]]:
    """Rows of a file, cached by (path, size, mtime): analysing a data set re-reads nothing."""
    st = Path(path).stat()
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[key] = read_rows(path, on_bad_rows="skip").rows
    return _CACHE[key]


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def _kind(values: list[Any]) -> str:
    seen = {type(v).__name__ for v in values if v is not None and v != ""}
    if not seen:
        return "empty"
    if seen <= {"int", "float"}:
        return "number"
    if seen == {"bool"}:
        return "bool"
    if seen == {"str"}:
        return "text"
    return "mixed" if len(seen) > 1 else next(iter(seen))


def analyse(files: dict[str, str | None], mapping: dict[str, Any] | None,
            max_source_tokens: int = 256) -> dict[str, Any]:
    """Counts, columns, preview, problems and a suggested mapping for a data set's files."""
    counts: dict[str, int] = {}
    train_rows: list[dict[str, Any]] = []
    for split in ("train", "validation", "test"):
        f = files.get(split)
        if not f:
            continue
        rows = _read(f)
        counts[split] = len(rows)
        if split == "train":
            train_rows = rows
    seen: dict[str, None] = {}  # ordered and O(1) per lookup: a 10,000-column file took 17-30 s as a list
    for r in train_rows[:1000]:
        for k in r:
            if k != "__line__":
                seen.setdefault(k)
    columns = list(seen)
    col_info = {}
    for c in columns:
        vals = [r.get(c) for r in train_rows]
        lens = [len(_text(v)) for v in vals]
        distinct = len({_text(v) for v in vals})
        col_info[c] = {"kind": _kind(vals[:2000]), "empty": sum(1 for v in vals if v is None or _text(v).strip() == ""),
                       "distinct": distinct, "mean_chars": round(sum(lens) / max(len(lens), 1), 1),
                       "max_chars": max(lens, default=0)}
    suggested = _suggest(columns, col_info, len(train_rows))
    if detect_format(set(columns), train_rows[:20])[0] != "columns":
        # conversations (alpaca's output, prompt-completion's completion): guessing columns would
        # turn them into column data; a run reads them as conversations when none are named
        suggested = {"input": [], "prompt": None, "target": None, "label": None, "image": None, "task": CAUSAL_LM}
    m = {**suggested, **{k: v for k, v in (mapping or {}).items() if v}}
    problems: list[dict[str, Any]] = []
    full_dups = len(train_rows) - len({json.dumps({k: _text(v) for k, v in r.items() if k != "__line__"},
                                                  sort_keys=True) for r in train_rows})
    if full_dups:
        problems.append({"kind": "duplicates", "count": full_dups,
                         "message": f"{full_dups} rows are exact duplicates of another row"})
    inputs = _input_columns(m)
    if inputs and all(c in columns for c in inputs):
        keys = ["\n".join(_text(r.get(c)) for c in inputs) for r in train_rows]
        dup_in = len(keys) - len(set(keys))
        if dup_in > full_dups:
            problems.append(_repeated_inputs(dup_in - full_dups, len(set(keys)), m))
        limit = max_source_tokens * CHARS_PER_TOKEN
        long_rows = [r.get("__line__") for r, k in zip(train_rows, keys, strict=True) if len(k) > limit]
        if long_rows:
            problems.append({"kind": "too_long", "count": len(long_rows), "lines": long_rows[:20],
                             "message": f"{len(long_rows)} rows have inputs longer than about {max_source_tokens} "
                                        f"tokens (estimated at {CHARS_PER_TOKEN} characters per token); they will "
                                        "be truncated to max_source_length"})
        empty_in = [r.get("__line__") for r in train_rows if any(_text(r.get(c)).strip() == "" for c in inputs)]
        if empty_in:
            problems.append({"kind": "empty_inputs", "count": len(empty_in), "lines": empty_in[:20],
                             "message": f"{len(empty_in)} rows have an empty input"})
    for key in ("target", "label"):
        col = m.get(key)
        if col and col in columns:
            empty = [r.get("__line__") for r in train_rows if _text(r.get(col)).strip() == ""]
            if empty:
                problems.append({"kind": f"empty_{key}s", "count": len(empty), "lines": empty[:20],
                                 "message": f"{len(empty)} rows have an empty {key} ({col!r}): a run stops on them. "
                                            "Fill them in, or remove those rows from the file"})
    n = counts.get("train", 0)
    if "validation" in counts and "test" in counts:
        split_note = "validation and test files given"
    else:
        fv, ft = 0.1, 0.1
        n_test = 0 if "test" in counts else max(1, int(n * ft))
        n_val = 0 if "validation" in counts else max(1, int(n * fv))
        counts = {**counts, "train_after_split": max(0, n - n_test - n_val)}
        if "validation" not in counts:
            counts["validation"] = n_val
        if "test" not in counts:
            counts["test"] = n_test
        split_note = (f"no {'validation/test' if n_test and n_val else ('test' if n_test else 'validation')} "
                      "file: the engine holds out 10% of the training rows for each (seed 42)")
    chat = _chat_view(files.get("train") or "", train_rows, columns, m, problems)
    # a chat format carries its own replies: no target column to choose (unless columns are named)
    conversational = chat["format"] != "columns" and not any((mapping or {}).get(k) for k in MAPPED)
    problems += _size_problems(counts, m, columns, train_rows, conversational)
    preview = [{k: v for k, v in r.items() if k != "__line__"} for r in train_rows[:PREVIEW_ROWS]]
    return {"counts": counts, "columns": columns, "column_info": col_info, "preview": preview,
            "problems": problems, "suggested_mapping": suggested, "split_note": split_note, **chat}


def _chat_view(source: str, rows: list[dict[str, Any]], columns: list[str], m: dict[str, Any],
               problems: list[dict[str, Any]]) -> dict[str, Any]:
    """`format` (what `data.format: auto` finds, and why) and `conversation`: the first row as
    the conversation a run builds from it (a chat format's own; for columns with a target, the
    two-turn one of `data.as_chat`), or None. Rows of a chat format that would be refused are
    counted in `problems` (kind `bad_conversations`, with their file:line messages)."""
    fmt, why = detect_format(set(columns), rows[:20])
    conv: Conversation | None = None
    if fmt != "columns":
        convs, bad = convert_rows(rows, fmt, source, on_bad_rows="skip")
        conv = convs[0] if convs else None
        if bad:
            lines = [b.split(": ", 1)[0].rsplit(":", 1)[-1] for b in bad[:20]]
            problems.append({"kind": "bad_conversations", "count": len(bad),
                             "lines": [int(x) if x.isdigit() else x for x in lines],
                             "examples": bad[:5], "message": f"{len(bad)} rows are not valid {fmt} conversations: "
                             "a run stops on them. Fix or remove those rows in the file"})
    elif rows and m.get("target") and _input_columns(m):
        from peftlab.config.schema import DataConfig
        from peftlab.data.conversations import input_template
        from peftlab.data.mappings import template_conversation

        prompt = input_template(DataConfig(train=source or "train", input=m.get("input") or None,
                                           prompt=m.get("prompt") or None))
        for r in rows[:PREVIEW_ROWS]:
            try:
                conv = template_conversation(r, prompt, m["target"], f"{source}:{r.get('__line__', '?')}")
                break
            except (BadRow, KeyError, ValueError):
                continue
    shown = None if conv is None else {"where": conv.where, "system": conv.system,
                                       "messages": [{"role": t.role, "content": t.content} for t in conv.turns]}
    return {"format": fmt, "format_reason": why, "conversation": shown}


def render_conversation(conv: dict[str, Any], tok: Any, max_tokens: int | None = None) -> dict[str, Any]:
    """The analysis' `conversation` rendered by `tok` exactly as training encodes it: `segments`
    of text, each `trained` (an assistant reply and its end-of-turn token: the loss) or not
    (template headers, system and user turns), and their concatenation as `text`."""
    from peftlab.data.chat_encoding import render_segments

    turns = [Turn(mm["role"], mm["content"]) for mm in conv["messages"]]
    segments = render_segments(tok, Conversation(conv.get("system"), turns, conv.get("where", "")), max_tokens)
    return {"chat_template": bool(getattr(tok, "chat_template", None)), "segments": segments,
            "text": "".join(s["text"] for s in segments)}


SMALL_TRAIN = 50  # training examples below which scores are mostly noise


MAPPED = ("input", "prompt", "target", "label", "image")
SMALL_EVAL = 20  # test (or validation) examples below which a score says little


def _repeated_inputs(n: int, distinct: int, m: dict[str, Any]) -> dict[str, Any]:
    """Rows whose input another row has too, with another target or label. For a label that is a
    contradiction; for a generation target it is how multi-reference data (E2E: one meaning
    representation, several descriptions) is laid out, so it is a note, not a warning."""
    task = m.get("task")
    if task in SPECS and SPECS[task].target_key == "label":
        return {"kind": "duplicate_inputs", "count": n,
                "message": f"{n} rows repeat the input of another row with a different label: the model is taught "
                           "both answers for the same input. Fix the labels, or drop the repeated rows"}
    return {"kind": "duplicate_inputs", "count": n, "level": "note",
            "message": f"{n} rows repeat the input of another row with another target ({distinct} distinct inputs). "
                       "Fine when they are several references of one input (as in E2E: each row trains as its own "
                       "example); check them if only one answer is right"}


def _size_problems(counts: dict[str, int], m: dict[str, Any], columns: list[str],
                   train_rows: list[dict[str, Any]], conversational: bool = False) -> list[dict[str, Any]]:
    """An empty or tiny training set (after the split the engine makes), a test or validation
    split too small to score on, and a missing target (none for conversations: they hold their
    replies)."""
    out: list[dict[str, Any]] = []
    n = counts.get("train", 0)
    after = counts.get("train_after_split", n)
    if n == 0:
        out.append({"kind": "empty_train", "count": 0, "message": "the file has no rows to train on"})
    elif "train_after_split" in counts and n - counts.get("validation", 0) - counts.get("test", 0) < 2:
        out.append({"kind": "too_few_rows", "count": n,
                    "message": f"only {n} row{'s' if n != 1 else ''}: too few to split into train, validation and "
                               f"test ({after} would be left to train on; the engine refuses fewer than 2). Add rows, "
                               "or give validation and test files"})
    elif after < SMALL_TRAIN:
        out.append({"kind": "tiny_train", "count": after,
                    "message": f"only {after} training example{'s' if after != 1 else ''}"
                               f"{' after the split' if 'train_after_split' in counts else ''}: a comparison on so "
                               f"few is mostly noise (aim for a few hundred)"})
    k = counts.get("test")
    if n and k is not None and 0 < k < SMALL_EVAL:
        out.append({"kind": "small_test", "count": k,
                    "message": f"only {k} test example{'s' if k != 1 else ''}: one example moves the score by "
                               f"{100 / k:.0f} points, so methods cannot be told apart. Give a larger test file "
                               f"(aim for {SMALL_EVAL * 5} or more)"})
    task = m.get("task")
    key = SPECS[task].target_key if task in SPECS else "target"
    col = m.get(key)
    if conversational:
        return out
    if not col:
        out.append({"kind": f"no_{key}", "count": 0,
                    "message": f"no {key} column: choose the column the model should learn to "
                               f"{'predict' if key == 'label' else 'write'} in the column mapping"})
    elif col in columns and train_rows and all(_text(r.get(col)).strip() == "" for r in train_rows):
        out.append({"kind": f"no_{key}s", "count": len(train_rows),
                    "message": f"the {key} column {col!r} is empty in every row"})
    return out


def _input_columns(m: dict[str, Any]) -> list[str]:
    if m.get("prompt"):
        from peftlab.data.prepare import template_fields

        try:
            return template_fields(m["prompt"])
        except Exception:  # noqa: BLE001
            return []
    v = m.get("input") or []
    return [v] if isinstance(v, str) else list(v)


def _suggest(columns: list[str], info: dict[str, dict[str, Any]], n: int) -> dict[str, Any]:
    low = {c.lower(): c for c in columns}
    label = next((low[g] for g in LABEL_GUESSES if g in low), None)
    if label is None:  # a short column with few distinct values looks like a label
        for c in columns:
            i = info[c]
            if n >= 10 and 1 < i["distinct"] <= max(2, min(50, n // 5)) and i["mean_chars"] < 30:
                label = c
                break
    target = next((low[g] for g in TARGET_GUESSES if g in low), None)
    image = next((c for c in columns if "image" in c.lower() or c.lower() in ("img", "pixels", "png", "jpg")), None)
    skip = {"id", "idx", "index", "split", "uid", "guid"}
    text_cols = sorted((c for c in columns if c not in (target, label, image) and c.lower() not in skip
                        and info[c]["kind"] in ("text", "mixed")),
                       key=lambda c: -info[c]["mean_chars"])
    inputs = text_cols[:1]
    # the first task (in spec order) whose needs the guessed columns meet: text + target -> causal-lm
    want = "label" if label and not target else "target"
    task = next(n for n, s in SPECS.items() if s.target_key == want and s.image_input == (want == "label" and bool(image)))
    img = SPECS[task].image_input
    return {"input": [] if img else inputs, "prompt": None, "target": target,
            "label": label, "image": image if img else None, "task": task}
