"""Data sets of the web service: uploads and server-side files, their checks and column mapping.

An uploaded file is written to `<store>/uploads/.incoming/`, read with the engine's own
reader (`peftlab.data.sources.read_rows`), and only when it reads is it moved to
`<store>/uploads/<id>/<safe name>`. The name a person gave the file never becomes a path:
only its extension is kept, on a name made of safe characters. Server-side files are
referenced where they are (never copied), and only inside the data folders
(`peftlab.paths.search_dirs('data')`) or the folders given with `--data-dir`.

A file with a `split` column (train / validation|valid|val|dev / test) is written out as
one file per split; otherwise the engine carves validation and test from train.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from peftlab.data.sources import FORMATS, read_rows
from peftlab.errors import DataError
from peftlab.paths import search_dirs
from peftlab.store import Store
from peftlab.tasks.spec import SPECS

SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
TARGET_GUESSES = ("target", "output", "title", "summary", "answer", "response", "completion", "ref", "label_text")
LABEL_GUESSES = ("label", "labels", "class", "category", "sentiment")
CHARS_PER_TOKEN = 4  # rough estimate used for the "too long" check (no tokenizer needed)
PREVIEW_ROWS = 10


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).stem).strip("._-")
    return (stem or "data")[:60]


class Datasets:
    def __init__(self, store: Store, data_dirs: list[Path] | None = None) -> None:
        self.store = store
        self.root = store.uploads
        self.root.mkdir(parents=True, exist_ok=True)
        self.extra_dirs = [Path(d).resolve() for d in (data_dirs or [])]

    # -- where files may come from --------------------------------------------
    def allowed_dirs(self) -> list[Path]:
        return [*(d.resolve() for d in search_dirs("data")), *self.extra_dirs]

    def server_files(self, limit: int = 500) -> list[dict[str, Any]]:
        """Data files inside the allowed folders (what a person may point at)."""
        out: list[dict[str, Any]] = []
        for d in self.allowed_dirs():
            if not d.is_dir():
                continue
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix.lower() in FORMATS and not any(x.startswith(".") for x in p.parts):
                    out.append({"path": str(p), "relative": str(p.relative_to(d)), "root": str(d),
                                "bytes": p.stat().st_size})
                    if len(out) >= limit:
                        return out
        return out

    def _check_server_path(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        if not p.is_absolute():
            for d in self.allowed_dirs():
                if (d / p).exists():
                    p = d / p
                    break
        p = p.resolve()
        if not any(p == d or d in p.parents for d in self.allowed_dirs()):
            allowed = ", ".join(str(d) for d in self.allowed_dirs()) or "(none configured)"
            raise DataError(f"{raw}: only files inside the data folders can be used ({allowed}); "
                            "upload the file instead, or start the service with --data-dir")
        if not p.is_file():
            raise DataError(f"{raw}: no such file in the data folders")
        if p.suffix.lower() not in FORMATS:
            raise DataError(f"{raw}: unknown file type {p.suffix!r}; use .jsonl, .csv or .parquet")
        return p

    # -- create ---------------------------------------------------------------
    def add_upload(self, filename: str, src: Path, name: str | None = None) -> dict[str, Any]:
        """Validate the uploaded file at `src` (a temp file) and keep it. Raises DataError."""
        ext = Path(filename).suffix.lower()
        if ext not in FORMATS:
            raise DataError(f"{filename}: unknown file type {ext!r}; upload a .jsonl, .csv or .parquet file")
        ds_id = uuid.uuid4().hex[:12]
        incoming = self.root / ".incoming"
        incoming.mkdir(exist_ok=True)
        tmp = incoming / f"{ds_id}{ext}"
        shutil.move(str(src), tmp)
        try:
            rs = read_rows(str(tmp), on_bad_rows="skip")
        except DataError as e:
            tmp.unlink(missing_ok=True)
            raise DataError(str(e).replace(str(tmp), filename)) from None
        folder = self.root / ds_id
        folder.mkdir()
        final = folder / f"{_safe_stem(filename)}{ext}"
        tmp.rename(final)
        splits = self._split_files(rs.rows, folder, final)
        return self._record(ds_id, name or Path(filename).name, "upload", splits, rs.skipped)

    def add_path(self, raw: str, name: str | None = None, validation: str | None = None,
                 test: str | None = None) -> dict[str, Any]:
        p = self._check_server_path(raw)
        rs = read_rows(str(p), on_bad_rows="skip")
        splits = {"train": str(p), "validation": None, "test": None}
        for key, val in (("validation", validation), ("test", test)):
            if val:
                q = self._check_server_path(val)
                read_rows(str(q), on_bad_rows="skip")
                splits[key] = str(q)
        if not validation and not test and "train" in p.name:  # pick up validation/test files beside it
            for key, alts in (("validation", ("validation", "valid", "val", "dev")), ("test", ("test",))):
                for alt in alts:
                    cand = p.with_name(p.name.replace("train", alt))
                    if cand.is_file():
                        splits[key] = str(cand)
                        break
        ds_id = uuid.uuid4().hex[:12]
        return self._record(ds_id, name or p.name, "path", splits, rs.skipped)

    def _split_files(self, rows: list[dict[str, Any]], folder: Path, final: Path) -> dict[str, str | None]:
        splits: dict[str, str | None] = {"train": str(final), "validation": None, "test": None}
        col = next((c for c in ("split", "Split", "SPLIT") if c in rows[0]), None)
        if col is None:
            return splits
        values = {str(r.get(col, "")).strip().lower() for r in rows}
        if not values or not values <= set(SPLIT_NAMES) or "train" not in {SPLIT_NAMES[v] for v in values}:
            return splits
        parts: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            clean = {k: v for k, v in r.items() if k not in ("__line__", col)}
            parts.setdefault(SPLIT_NAMES[str(r[col]).strip().lower()], []).append(clean)
        for key, items in parts.items():
            out = folder / f"{key}.jsonl"
            with open(out, "w", encoding="utf-8") as f:
                for it in items:
                    f.write(json.dumps(it, ensure_ascii=False, default=str) + "\n")
            splits[key] = str(out)
        return splits

    def _record(self, ds_id: str, name: str, origin: str, splits: dict[str, str | None],
                skipped: list[str]) -> dict[str, Any]:
        info = {"skipped": skipped[:50], "skipped_count": len(skipped)}
        analysis = analyse(splits, None)
        mapping = analysis["suggested_mapping"]
        return self.store.save_dataset(ds_id, name, origin, splits, mapping, info)

    # -- read / update --------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        return self.store.datasets()

    def get(self, ds_id: str) -> dict[str, Any]:
        d = self.store.dataset(ds_id)
        if d is None:
            raise KeyError(ds_id)
        return d

    def detail(self, ds_id: str, max_source_tokens: int = 256) -> dict[str, Any]:
        d = self.get(ds_id)
        d["analysis"] = analyse(d["files"], d["mapping"], max_source_tokens)
        return d

    def set_mapping(self, ds_id: str, mapping: dict[str, Any]) -> dict[str, Any]:
        d = self.get(ds_id)
        cols = set(analyse(d["files"], None)["columns"])
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
        clean = {"input": inputs, "prompt": mapping.get("prompt") or None, "target": mapping.get("target") or None,
                 "label": mapping.get("label") or None, "image": mapping.get("image") or None}
        self.store.set_dataset_mapping(ds_id, clean)
        return self.get(ds_id)

    def delete(self, ds_id: str) -> None:
        d = self.get(ds_id)
        self.store.delete_dataset(ds_id)
        if d["origin"] == "upload":
            folder = (self.root / ds_id).resolve()
            if self.root.resolve() in folder.parents:
                shutil.rmtree(folder, ignore_errors=True)


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
    columns: list[str] = []
    for r in train_rows[:1000]:
        for k in r:
            if k != "__line__" and k not in columns:
                columns.append(k)
    col_info = {}
    for c in columns:
        vals = [r.get(c) for r in train_rows]
        lens = [len(_text(v)) for v in vals]
        distinct = len({_text(v) for v in vals})
        col_info[c] = {"kind": _kind(vals[:2000]), "empty": sum(1 for v in vals if v is None or _text(v).strip() == ""),
                       "distinct": distinct, "mean_chars": round(sum(lens) / max(len(lens), 1), 1),
                       "max_chars": max(lens, default=0)}
    suggested = _suggest(columns, col_info, len(train_rows))
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
            problems.append({"kind": "duplicate_inputs", "count": dup_in - full_dups,
                             "message": f"{dup_in - full_dups} rows repeat the input of another row with a different "
                                        "target or label"})
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
                                 "message": f"{len(empty)} rows have an empty {key} ({col!r}); set on_bad_rows: skip "
                                            "to drop them, or fix the file"})
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
    preview = [{k: v for k, v in r.items() if k != "__line__"} for r in train_rows[:PREVIEW_ROWS]]
    return {"counts": counts, "columns": columns, "column_info": col_info, "preview": preview,
            "problems": problems, "suggested_mapping": suggested, "split_note": split_note}


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
