"""Turn raw rows into checked examples for a task: columns, templates, labels, splits, limits.

All checks run before any model loads, so bad data costs seconds, not a training run.
"""

from __future__ import annotations

import base64
import difflib
import io
import math
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.config.schema import DataConfig
from peftlab.data.conversations import chat_examples, resolve_format
from peftlab.data.example import Example
from peftlab.data.sources import RowSet, read_rows
from peftlab.errors import ConfigError, DataError
from peftlab.tasks.spec import spec


@dataclass
class PreparedData:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prompt_text: str = ""  # the template's fixed words (used to initialise prompt tuning)
    format: str = "columns"  # the training file's row format (data.format, `auto` resolved)
    format_notes: list[str] = field(default_factory=list)  # what `auto` found; `peftlab run` prints them

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def template_fields(template: str) -> list[str]:
    try:
        parts = [(f, fmt, conv) for _, f, fmt, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ConfigError(f"data.prompt: bad template ({e}); write placeholders as {{column}}, braces as {{{{ }}}}") from None
    for f, fmt, conv in parts:
        if fmt or conv:  # {t:>300000000} would pad every row to 300 MB; {t!r} quotes it
            shown = f"{{{f}{'!' + conv if conv else ''}{':' + fmt if fmt else ''}}}"
            raise ConfigError(
                f"data.prompt: placeholder {shown} has a {'format spec' if fmt else 'conversion'}; write plain "
                f"{{column}} placeholders (nothing after the name) and literal braces as {{{{ }}}}"
            )
    fields = [f for f, _, _ in parts]
    for f in fields:
        if not f or f.isdigit() or any(c in f for c in ".[]"):
            raise ConfigError(
                f"data.prompt: placeholder {{{f}}} is not a column name; write placeholders as {{column}} "
                f"(no attributes, indexes or positions) and literal braces as {{{{ }}}}"
            )
    try:
        template.format_map({f: "x" for f in fields})
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as e:
        raise ConfigError(f"data.prompt: bad template ({e}); write placeholders as {{column}}, braces as {{{{ }}}}") from None
    return fields


def _source_columns(cfg: DataConfig) -> list[str]:
    if cfg.prompt:
        return template_fields(cfg.prompt)
    if cfg.input is None:
        return []
    return [cfg.input] if isinstance(cfg.input, str) else list(cfg.input)


def _format_source(cfg: DataConfig, row: dict[str, Any]) -> str:
    if cfg.prompt:
        return cfg.prompt.format_map({k: _text(v) for k, v in row.items()})
    cols = _source_columns(cfg)
    if len(cols) == 1:
        return _text(row[cols[0]])
    return "\n".join(f"{c}: {_text(row[c])}" for c in cols)


def _text(v: Any) -> str:
    if _missing(v):
        return ""
    return v if isinstance(v, str) else str(v)


def _missing(v: Any) -> bool:
    """None, or a float NaN (how pandas/Parquet writers spell an empty cell)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def check_columns(rs: RowSet, needed: list[tuple[str, str]]) -> None:
    """Every configured column must occur in the file (rows missing it are row errors later)."""
    present: dict[str, None] = {}
    for row in rs.rows:
        present.update(dict.fromkeys(k for k in row if k != "__line__"))
    for col, key in needed:
        if col not in present:
            guess = difflib.get_close_matches(col, list(present), n=1)
            hint = f" Did you mean {guess[0]!r}?" if guess else ""
            raise DataError(
                f"{rs.source}: column {col!r} (from {key}) not found.{hint} Columns in the file: "
                f"{', '.join(present) or '(none)'}. Fix {key} in the experiment file or rename the column"
            )


def decode_image(value: Any, base_dir: Path | None) -> Any:
    """Decode a base64 string, data URL or file path into an RGB-or-L PIL image."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(value, str | bytes) or not value:
        raise ValueError("empty image value")
    raw: bytes
    if isinstance(value, bytes):
        raw = value
    else:
        v = value.partition(",")[2] if value.startswith("data:") else value
        path = Path(value) if len(value) < 1024 and "\x00" not in value else None
        if path is not None and base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            is_file = path is not None and bool(path.suffix) and path.is_file()
        except OSError:  # e.g. a base64 string too long to be a file name
            is_file = False
        if is_file and path is not None:
            try:
                raw = path.read_bytes()
            except OSError as e:
                raise ValueError(f"cannot read image file {path} ({e.strerror or e})") from None
        else:
            try:
                raw = base64.b64decode(v, validate=True)
            except (ValueError, TypeError):
                raise ValueError("neither an existing image file nor valid base64") from None
    try:
        img = Image.open(io.BytesIO(raw))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"bytes do not decode as an image ({type(e).__name__}); check the file or encoding") from None
    except Exception as e:  # noqa: BLE001 - a corrupt image must be a row error, never a crash
        raise ValueError(f"bytes do not decode as an image ({type(e).__name__}: {e})") from None
    return img


def column_examples(rs: RowSet, cfg: DataConfig, task: str, skipped: list[str],
              need_target: bool = True) -> list[tuple[dict[str, Any], Example]]:
    """(row, Example) for each usable row of a columns file. `need_target=False` (prediction on
    new rows): the target or label may be missing, and is then left empty."""
    out = []
    s = spec(task)
    for row in rs.rows:
        where = f"{rs.source}:{row.get('__line__', '?')}"

        def bad(msg: str, where: str = where) -> None:
            if cfg.on_bad_rows == "skip":
                skipped.append(f"{where}: {msg}")
            else:
                raise DataError(f"{where}: {msg} (fix the row, or set data.on_bad_rows: skip)")

        ex = Example(source="", where=where)
        if s.text_input:
            missing = [c for c in _source_columns(cfg) if _missing(row.get(c))]
            if missing:
                bad(f"input column(s) {missing} empty or missing")
                continue
            ex.source = _format_source(cfg, row)
        if not need_target and _missing(row.get((cfg.target if s.target_key == "target" else cfg.label) or "")):
            pass
        elif s.target_key == "target":
            t = row.get(cfg.target or "")
            refs = [_text(x) for x in t] if isinstance(t, list) else [_text(t)]
            refs = [r for r in refs if r.strip()]
            if not refs:
                bad(f"empty or missing target {cfg.target!r}")
                continue
            ex.target, ex.references = refs[0], refs
        else:
            lab = row.get(cfg.label or "")
            if _missing(lab) or (isinstance(lab, str) and not lab.strip()):
                bad(f"empty or missing label {cfg.label!r}")
                continue
            if isinstance(lab, list | dict):
                bad(f"label {cfg.label!r} must be one value (a string or number), got {type(lab).__name__}")
                continue
            ex.label = lab  # type: ignore[assignment]  # mapped to an id once all splits are read
        if s.image_input:
            try:
                ex.image = decode_image(row.get(cfg.image or ""), rs.base_dir)
            except ValueError as e:
                bad(f"image column {cfg.image!r}: {e}")
                continue
        out.append((row, ex))
    return out


def _sample(items: list[Example], n: int | None, seed: int) -> list[Example]:
    if n is None or n >= len(items):
        return items
    rng = random.Random(seed)
    idx = sorted(rng.sample(range(len(items)), n))
    return [items[i] for i in idx]


def prepare_data(cfg: DataConfig, task: str, seed: int = 42, base: Path | None = None,
                 read_test: bool = True) -> PreparedData:
    """Read, check, split and limit the data for `task`. Raises DataError/ConfigError.

    `read_test=False` (tuning trials, their preflight): a test file is not opened at all, and
    the train and validation sets are exactly those of `read_test=True`. A test split carved
    from the training file is still held out of training (and not returned)."""
    skipped: list[str] = []
    notes: list[str] = []
    needed = needed_columns(cfg, task)
    fmt, format_notes = "columns", list[str]()

    sets: dict[str, list[Example]] = {}
    for split in ("train", "validation", "test"):
        source = getattr(cfg, split)
        if source is None:
            continue
        if split == "test" and not read_test:
            sets["test"] = []  # present, so nothing is carved from train in its place; never read
            continue
        rs = read_rows(source, base, cfg.on_bad_rows)
        skipped += rs.skipped
        before = len(skipped)
        file_fmt, note = resolve_format(cfg, rs)
        if note:
            format_notes.append(note)
        if split == "train":
            fmt = file_fmt
        check_columns(rs, needed)
        rows = chat_examples(rs, cfg, file_fmt, skipped) if cfg.chat else column_examples(rs, cfg, task, skipped)
        sets[split] = [ex for _, ex in rows]
        if not sets[split]:
            why = f"; first: {skipped[before]}" if len(skipped) > before else ""
            raise DataError(
                f"{rs.source}: no usable rows after checks ({len(skipped) - before} of {len(rs.rows)} "
                f"skipped{why})"
            )

    rng = random.Random(seed)
    train = sets["train"]
    if "validation" not in sets or "test" not in sets:
        order = list(range(len(train)))
        rng.shuffle(order)
        n = len(order)
        fv, ft = cfg.split_fractions
        n_test = 0 if "test" in sets else max(1, int(n * ft))
        n_val = 0 if "validation" in sets else max(1, int(n * fv))
        if n - n_test - n_val < 2:
            raise DataError(f"{cfg.train}: only {n} rows; too few to split into train/validation/test")
        test_idx, val_idx = order[:n_test], order[n_test : n_test + n_val]
        if "test" not in sets:
            sets["test"] = [train[i] for i in sorted(test_idx)]
            notes.append(f"no test file: held out {n_test} training rows (seed {seed}) as test")
        if "validation" not in sets:
            sets["validation"] = [train[i] for i in sorted(val_idx)]
            notes.append(f"no validation file: held out {n_val} training rows (seed {seed}) as validation")
        held = set(test_idx) | set(val_idx)
        train = [e for i, e in enumerate(train) if i not in held]

    train = _sample(train, cfg.max_train_examples, seed)
    validation = _sample(sets["validation"], cfg.max_validation_examples, seed + 1)
    test = _sample(sets["test"], cfg.max_test_examples, seed + 2) if read_test else []

    labels = None
    if spec(task).target_key == "label":
        labels = _map_labels(train, validation, test, cfg, notes)
        notes.append(f"{len(labels)} classes: {', '.join(labels[:20])}{', ...' if len(labels) > 20 else ''}")
    static = "".join(lit for lit, *_ in string.Formatter().parse(cfg.prompt)) if cfg.prompt else ""
    return PreparedData(train, validation, test, labels, skipped, notes, static.strip(), fmt, format_notes)


def needed_columns(cfg: DataConfig, task: str, need_target: bool = True) -> list[tuple[str, str]]:
    """The configured columns every file must have, with the key that names each."""
    needed: list[tuple[str, str]] = []
    s = spec(task)
    if cfg.chat and not cfg.as_chat:
        return needed  # the format's own columns, checked per row
    if s.text_input:
        key = "data.prompt" if cfg.prompt else "data.input"
        needed += [(c, key) for c in _source_columns(cfg)]
    if need_target and s.target_key == "target" and cfg.target:
        needed.append((cfg.target, "data.target"))
    if need_target and s.target_key == "label" and cfg.label:
        needed.append((cfg.label, "data.label"))
    if s.image_input and cfg.image:
        needed.append((cfg.image, "data.image"))
    return needed


def label_name(value: Any, numeric: bool) -> str:
    """The class a label value belongs to. Numbers that are equal are one class (1, 1.0 and, in a
    column of numbers only, "1" and "1.0" all become "1"); text labels keep their text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float) or numeric:
        try:
            f = float(value)
        except (TypeError, ValueError):
            return str(value).strip()
        if math.isfinite(f) and f == int(f):
            return str(int(f))
        return repr(f)
    return str(value).strip()


def is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _map_labels(train: list[Example], val: list[Example], test: list[Example], cfg: DataConfig,
                notes: list[str] | None = None) -> list[str]:
    every = [e.label for e in (*train, *val, *test)]
    numeric = all(is_number(v) for v in every)
    raw: dict[str, set[str]] = {}
    for e in (*train, *val, *test):
        name = label_name(e.label, numeric)
        raw.setdefault(name, set()).add(str(e.label))
        e.label = name  # type: ignore[assignment]  # the class name, mapped to an id below
    merged = {n: sorted(vs) for n, vs in raw.items() if len(vs) > 1}
    if merged and notes is not None:
        notes.append("labels that are the same number were merged into one class: "
                     + "; ".join(f"{' and '.join(vs)} -> {n!r}" for n, vs in sorted(merged.items())))
    names = sorted({str(e.label) for e in train}, key=_label_key)
    if len(names) < 2:
        raise DataError(
            f"{cfg.train}: the training set has a single class ({names[0]!r}); classification needs at least "
            f"two. Add examples of the other classes, or check that data.label ({cfg.label!r}) is the label column"
        )
    index = {n: i for i, n in enumerate(names)}
    for split, exs in (("validation", val), ("test", test)):
        unseen = sorted({str(e.label) for e in exs} - set(names))
        if unseen:
            first = next(e.where for e in exs if str(e.label) in unseen)
            raise DataError(
                f"{split} labels {unseen} never occur in training (first at {first}); "
                f"training labels are {names}. Fix the labels or add training examples"
            )
    for e in (*train, *val, *test):
        e.label = index[str(e.label)]
    return names


def _label_key(s: str) -> tuple[int, Any, str]:
    """Numbers by value, then text; ties ("1" and "1.0" in a text column) by their text."""
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)
