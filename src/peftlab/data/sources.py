"""Read rows from JSONL, CSV, Parquet or a hub dataset.

Every failure is a DataError naming the file and line (or row) and saying what to fix.
With `on_bad_rows="skip"`, malformed lines are skipped and returned in `RowSet.skipped`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.errors import DataError
from peftlab.paths import resolve

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class RowSet:
    source: str
    rows: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)  # "file:line: why"
    base_dir: Path | None = None  # for resolving relative image paths


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what a file may decode to, checked before it is decoded where the format says
    (Parquet's metadata): a small compressed file can hold millions of rows. The web service
    sets them for files it is sent; the CLI reads the user's own files without limits."""

    max_rows: int | None = None
    max_cells: int | None = None  # rows x columns: each cell becomes a Python object (~100 bytes)

    def check(self, src: str, rows: int, columns: int = 1) -> None:
        if self.max_rows is not None and rows > self.max_rows:
            raise DataError(f"{src}: {rows:,} rows, more than the {self.max_rows:,} this service accepts; "
                            "use a smaller sample (or run it with the peftlab CLI)")
        if self.max_cells is not None and rows * columns > self.max_cells:
            raise DataError(f"{src}: {rows:,} rows x {columns:,} columns decode to {rows * columns:,} values, more "
                            f"than the {self.max_cells:,} this service accepts; use a smaller sample or fewer columns")


NO_LIMITS = ReadLimits()


def read_rows(spec: str, base: Path | None = None, on_bad_rows: str = "error",
              limits: ReadLimits = NO_LIMITS) -> RowSet:
    """Read a data source: a local file (searched on PEFTLAB_DATA_PATH too) or a hub id."""
    path = None if spec.startswith(HUB_PREFIX) else resolve(spec, "data", base)
    if path is None:
        if not spec.startswith(HUB_PREFIX) and (
                Path(spec).suffix.lower() in FORMATS or "/" not in spec or spec.startswith((".", "/", "~"))):
            raise DataError(
                f"{spec}: data file not found (looked relative to the experiment file, the current "
                f"directory, PEFTLAB_DATA_PATH and shared/data). Check the path."
            )
        return _read_hub(spec)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; name a .jsonl, .csv or .parquet file inside it")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .jsonl, .csv or .parquet")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e}); check its permissions") from None
    if not data.strip():
        raise DataError(f"{path}: the file is empty; it needs a header/first row and examples")
    if fmt == "jsonl" and path.suffix.lower() == ".json" and data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        fmt = "json-array"
    elif fmt == "jsonl":
        _check_json_shape(data, str(path))
    if fmt == "parquet":
        _check_parquet_size(data, str(path), limits)
    reader = {"jsonl": _read_jsonl, "json-array": _read_json_array, "csv": _read_csv, "parquet": _read_parquet}[fmt]
    rows, skipped = reader(data, str(path), on_bad_rows)
    limits.check(str(path), len(rows), max((len(r) - 1 for r in rows), default=1))
    if not rows and skipped:
        raise DataError(f"{path}: no usable rows ({len(skipped)} skipped; first: {skipped[0]})")
    if not rows:
        raise DataError(f"{path}: no data rows (only a header or blank lines); add examples to the file")
    return RowSet(str(path), rows, skipped, path.parent)


def _bad(msg: str, on_bad_rows: str, skipped: list[str]) -> None:
    if on_bad_rows == "skip":
        skipped.append(msg)
    else:
        raise DataError(msg + " (fix the row, or set data.on_bad_rows: skip to drop such rows)")


def _read_jsonl(data: bytes, src: str, on_bad_rows: str) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    skipped: list[str] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _bad(f"{src}:{i}: bytes that are not UTF-8 (byte {e.start + 1} of the line); re-save the file as UTF-8",
                 on_bad_rows, skipped)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            _bad(f"{src}:{i}: malformed JSON ({e.msg}: column {e.colno}); each line must be one "
                 f"complete JSON object", on_bad_rows, skipped)
            continue
        except RecursionError:
            _bad(f"{src}:{i}: malformed JSON (nested too deeply)", on_bad_rows, skipped)
            continue
        problem = _row_problem(obj, line)
        if problem:
            _bad(f"{src}:{i}: {problem}", on_bad_rows, skipped)
            continue
        obj["__line__"] = i
        rows.append(obj)
    return rows, skipped


def _check_json_shape(data: bytes, src: str) -> None:
    """A file read as JSON Lines whose first line is not a JSON value, but which is one JSON value
    as a whole: a pretty-printed array or object, or an object wrapping the rows. Each of those
    would otherwise fail on every line, and "skip bad rows" would skip them all."""
    text = data.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    first = text.split("\n", 1)[0].strip()
    if not first or first[0] not in "[{":
        return
    try:
        json.loads(first)
        return  # a complete value on line 1: JSON Lines (or an array on one line, refused per line)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        whole = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return  # not one JSON value either: the per-line messages say where it breaks
    if isinstance(whole, list):
        raise DataError(
            f"{src}: the file is one JSON array spread over several lines ({len(whole)} items), not JSON Lines "
            f"(one object per line). Rename it to .json (peftlab reads a top-level array of objects there), or "
            f"write one object per line"
        )
    lists = {k: v for k, v in whole.items() if isinstance(v, list)} if isinstance(whole, dict) else {}
    if lists:
        key, rows = max(lists.items(), key=lambda kv: len(kv[1]))
        raise DataError(
            f"{src}: the file is one JSON object whose key {key!r} holds a list of {len(rows)} items, not JSON "
            f"Lines. Save that list alone as a .json file (a top-level array of objects), or write one object "
            f"per line (e.g. jq -c '.{key}[]' {Path(src).name} > rows.jsonl)"
        )
    raise DataError(
        f"{src}: the file is one JSON object spread over several lines (pretty-printed), not JSON Lines. Write "
        f"each row as one object on its own line (e.g. jq -c . {Path(src).name})"
    )


def _row_problem(obj: Any, line: str) -> str | None:
    """Why a decoded JSON value cannot be a row, or None."""
    if not isinstance(obj, dict):
        return f"each line must be a JSON object {{...}}, got {_json_type(obj)}"
    if "\\u" in line:  # a lone surrogate escape decodes to a str that is not valid Unicode
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return "a \\uD800-\\uDFFF escape that is not a valid character (lone surrogate); fix the text"
    return None


def _json_type(v: Any) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false"}
    return "null" if v is None else names.get(type(v), type(v).__name__)


def _read_json_array(data: bytes, src: str, on_bad_rows: str) -> tuple[list[dict], list[str]]:
    """A .json file holding one top-level array of objects (not JSON Lines)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{src}:{line}: bytes that are not UTF-8; re-save the file as UTF-8") from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{src}:{e.lineno}: malformed JSON ({e.msg}: column {e.colno}); a .json file must be one "
            f"array of objects [{{...}}, ...] or JSON Lines (one object per line)"
        ) from None
    except RecursionError:
        raise DataError(f"{src}: malformed JSON (nested too deeply)") from None
    rows: list[dict] = []
    skipped: list[str] = []
    for i, obj in enumerate(items, start=1):
        problem = _row_problem(obj, "\\u")
        if problem:
            _bad(f"{src}: item {i}: {problem}", on_bad_rows, skipped)
            continue
        obj["__line__"] = f"item {i}"
        rows.append(obj)
    return rows, skipped


def _read_csv(data: bytes, src: str, on_bad_rows: str) -> tuple[list[dict], list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{src}:{line}: bytes that are not UTF-8; re-save the file as UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(f"{src}:{line}: NUL bytes in a CSV file; is it really CSV text? Re-save it as UTF-8 CSV")
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # long texts are normal in data sets
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{src}: the file is empty; the first line must be a header") from None
    except csv.Error as e:
        raise DataError(f"{src}:1: malformed CSV header ({e})") from None
    header = [h.strip() for h in header]
    if not header:
        raise DataError(f"{src}:1: the first line must be a header naming the columns (e.g. text,label)")
    if len(set(header)) != len(header) or any(not h for h in header):
        raise DataError(
            f"{src}:1: header has empty or repeated column names: {header}; give every column a unique name"
        )
    rows: list[dict] = []
    skipped: list[str] = []
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            _bad(f"{src}:{reader.line_num}: malformed CSV ({e})", on_bad_rows, skipped)
            continue
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) != len(header):
            _bad(f"{src}:{reader.line_num}: {len(rec)} fields but the header has {len(header)}",
                 on_bad_rows, skipped)
            continue
        row: dict[str, Any] = dict(zip(header, rec, strict=True))
        row["__line__"] = reader.line_num
        rows.append(row)
    return rows, skipped


def _check_parquet_size(data: bytes, src: str, limits: ReadLimits) -> None:
    """Rows and uncompressed size from the Parquet footer, before anything is decoded."""
    if limits == NO_LIMITS or not data.startswith(b"PAR1"):
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{src}: not a readable Parquet file ({str(e).splitlines()[0] if str(e) else e})") from None
    limits.check(src, meta.num_rows, meta.num_columns)


def _read_parquet(data: bytes, src: str, on_bad_rows: str) -> tuple[list[dict], list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data.startswith(b"PAR1"):
        raise DataError(
            f"{src}: not a Parquet file (it does not start with the Parquet magic bytes 'PAR1'); "
            f"check the file, or give it the extension of its real format (.jsonl or .csv)"
        )
    try:
        table = pq.read_table(io.BytesIO(data))
        rows = table.to_pylist()
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, MemoryError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{src}: not a readable Parquet file ({msg}); check the file or re-export it") from None
    for i, r in enumerate(rows, start=1):
        r["__line__"] = i
    return rows, []


HUB_PREFIX = "hf://"


def hub_id(spec: str) -> tuple[str, str] | None:
    """(dataset id, split) of a hub data source, `hf://org/name[:split]` or `org/name[:split]`
    (split `train` when none is given); None when no dataset id is left."""
    name, _, split = spec.removeprefix(HUB_PREFIX).partition(":")
    name = name.strip("/")
    return (name, split or "train") if name else None


def _read_hub(spec: str) -> RowSet:
    """Rows of a hub dataset split through `datasets` (its cache first). Offline, or when the
    hub refuses, one message that says which and what to do instead."""
    import os

    found = hub_id(spec)
    if found is None:
        raise DataError(f"{spec}: not a hub dataset id; write hf://org/name or hf://org/name:split")
    name, split = found
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if offline:
            raise DataError(
                f"{spec}: hub dataset {name!r} (split {split!r}) is not in the local cache, and the hub is switched off "
                f"here (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set). Load it once where the hub can be reached "
                f"(it is cached), or export it to a .jsonl file and give that path ({why})"
            ) from None
        raise DataError(
            f"{spec}: loading hub dataset {name!r} (split {split!r}) failed ({why}). Check the id and split "
            f"(hf://org/name:split), your network, and HF_TOKEN for gated data; or use a local file"
        ) from None
    rows = [dict(r, __line__=i) for i, r in enumerate(ds, start=1)]
    if not rows:
        raise DataError(f"{spec}: hub dataset {name!r} split {split!r} has no rows")
    return RowSet(f"{HUB_PREFIX}{name}:{split}", rows)
