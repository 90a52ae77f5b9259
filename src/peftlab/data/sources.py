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


def read_rows(spec: str, base: Path | None = None, on_bad_rows: str = "error") -> RowSet:
    """Read a data source: a local file (searched on PEFTLAB_DATA_PATH too) or a hub id."""
    path = resolve(spec, "data", base)
    if path is None:
        if Path(spec).suffix.lower() in FORMATS or "/" not in spec or spec.startswith((".", "/", "~")):
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
    data = path.read_bytes()
    if not data.strip():
        raise DataError(f"{path}: the file is empty; it needs a header/first row and examples")
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]
    rows, skipped = reader(data, str(path), on_bad_rows)
    if not rows:
        raise DataError(f"{path}: no usable rows" + (f" ({len(skipped)} skipped: {skipped[0]})" if skipped else ""))
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
            _bad(f"{src}:{i}: bytes that are not UTF-8 at column {e.start + 1}; re-save the file as UTF-8",
                 on_bad_rows, skipped)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            _bad(f"{src}:{i}: malformed JSON ({e.msg} at column {e.colno})", on_bad_rows, skipped)
            continue
        if not isinstance(obj, dict):
            _bad(f"{src}:{i}: each line must be a JSON object {{...}}, got {type(obj).__name__}",
                 on_bad_rows, skipped)
            continue
        obj["__line__"] = i
        rows.append(obj)
    return rows, skipped


def _read_csv(data: bytes, src: str, on_bad_rows: str) -> tuple[list[dict], list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{src}:{line}: bytes that are not UTF-8; re-save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{src}: the file is empty; the first line must be a header") from None
    except csv.Error as e:
        raise DataError(f"{src}:1: malformed CSV header ({e})") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise DataError(f"{src}:1: header has empty or repeated column names: {header}")
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
        row: dict[str, Any] = dict(zip(header, rec))
        row["__line__"] = reader.line_num
        rows.append(row)
    return rows, skipped


def _read_parquet(data: bytes, src: str, on_bad_rows: str) -> tuple[list[dict], list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise DataError(f"{src}: not a readable Parquet file ({e}); check the file or its extension") from None
    rows = table.to_pylist()
    for i, r in enumerate(rows, start=1):
        r["__line__"] = i
    return rows, []


def _read_hub(spec: str) -> RowSet:
    name, _, split = spec.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
        raise DataError(
            f"{spec}: not a local file, and loading it from the Hugging Face hub failed "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Offline? Use a local file."
        ) from None
    rows = [dict(r, __line__=i) for i, r in enumerate(ds, start=1)]
    return RowSet(spec, rows)
