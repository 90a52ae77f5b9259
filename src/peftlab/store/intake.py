"""Taking data sets into a store: uploaded files and server-side files, checked before they
are kept, with their column mapping. Used by the web service's datasets router; the rows are
in the datasets table (`peftlab.store.datasets`), what a file holds is `peftlab.data.analyze`.

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

from peftlab.data.analyze import analyse, check_mapping, split_by_column
from peftlab.data.sources import FORMATS, ReadLimits, read_rows
from peftlab.errors import DataError, NotFound
from peftlab.paths import search_dirs
from peftlab.store import Store

# What a file sent to the service may decode to: an 11 KB Parquet file can hold a million rows.
SERVICE_LIMITS = ReadLimits(max_rows=200_000, max_cells=5_000_000)


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).stem).strip("._-")
    return (stem or "data")[:60]


class NameTaken(DataError):
    """A data set of that name exists already."""


class Datasets:
    """The data sets of one store; server-side files only from `allowed_dirs()`."""

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

    def check_path(self, raw: str) -> Path:
        """The data file `raw` names, resolved (symlinks followed), if it lies inside the data folders
        or the store's uploads; else DataError. Every path a request carries goes through here."""
        if not isinstance(raw, str) or not raw or "\x00" in raw or len(raw) > 4096:
            raise DataError(f"{str(raw)[:80]!r}: not a file path")
        try:
            return self._check_server_path(raw)
        except (OSError, ValueError) as e:
            raise DataError(f"{raw[:200]}: not a usable path ({e})") from None

    def _check_server_path(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        if not p.is_absolute():
            for d in self.allowed_dirs():
                if (d / p).exists():
                    p = d / p
                    break
        p = p.resolve()
        roots = [*self.allowed_dirs(), self.root.resolve()]
        if not any(p == d or d in p.parents for d in roots):
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
            rs = read_rows(str(tmp), on_bad_rows="skip", limits=SERVICE_LIMITS)
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
        p = self.check_path(raw)
        rs = read_rows(str(p), on_bad_rows="skip", limits=SERVICE_LIMITS)
        splits = {"train": str(p), "validation": None, "test": None}
        for key, val in (("validation", validation), ("test", test)):
            if val:
                q = self.check_path(val)
                read_rows(str(q), on_bad_rows="skip", limits=SERVICE_LIMITS)
                splits[key] = str(q)
        if not validation and not test and "train" in p.name:  # pick up validation/test files beside it
            for key, alts in (("validation", ("validation", "valid", "val", "dev")), ("test", ("test",))):
                for alt in alts:
                    cand = p.with_name(p.name.replace("train", alt))
                    if cand.is_file():
                        try:  # a sibling that is a link out of the data folders is not picked up
                            splits[key] = str(self.check_path(str(cand)))
                        except DataError:
                            continue
                        break
        ds_id = uuid.uuid4().hex[:12]
        return self._record(ds_id, name or p.name, "path", splits, rs.skipped)

    def _split_files(self, rows: list[dict[str, Any]], folder: Path, final: Path) -> dict[str, str | None]:
        splits: dict[str, str | None] = {"train": str(final), "validation": None, "test": None}
        for key, items in (split_by_column(rows) or {}).items():
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
            raise NotFound(f"no dataset {ds_id!r}")
        return d

    def detail(self, ds_id: str, max_source_tokens: int = 256) -> dict[str, Any]:
        d = self.get(ds_id)
        d["analysis"] = analyse(d["files"], d["mapping"], max_source_tokens)
        return d

    def set_mapping(self, ds_id: str, mapping: dict[str, Any]) -> dict[str, Any]:
        """Check the mapping's columns against the file (DataError) and keep it."""
        d = self.get(ds_id)
        clean = check_mapping(analyse(d["files"], None)["columns"], mapping)
        self.store.set_dataset_mapping(ds_id, clean)
        return self.get(ds_id)

    def rename(self, ds_id: str, name: str) -> dict[str, Any]:
        """Rename a data set; a name another data set has is refused (DataError, with the fix)."""
        self.get(ds_id)
        clean = name.strip()
        if not clean:
            raise DataError("Name: type a name for the data set")
        if self.store.rename_dataset(ds_id, clean[:200]) is not None:
            raise NameTaken(f"Name: another data set is already called {clean!r}; choose another name "
                            "(or rename or delete that one first)")
        return self.get(ds_id)

    def delete(self, ds_id: str) -> None:
        d = self.get(ds_id)
        self.store.delete_dataset(ds_id)
        if d["origin"] == "upload":
            folder = (self.root / ds_id).resolve()
            if self.root.resolve() in folder.parents:
                shutil.rmtree(folder, ignore_errors=True)
