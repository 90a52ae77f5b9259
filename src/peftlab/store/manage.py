"""Deleting and renaming what the store holds: a run, an experiment (its runs with them), with
their folders (`runs/<experiment>/<run>/`, `exports/<experiment>/<run>/`).

Nothing that is running is touched: a run whose process is on it cannot be deleted, and an
experiment with a running or queued run can be neither deleted nor renamed (cancel them
first). Each change is one transaction; the folders move or go inside it, so a folder that
cannot be moved leaves the database as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftlab.config.schema import NAME_RE
from peftlab.errors import NotFound, PeftlabError
from peftlab.store.db import Database

BUSY = ("running", "queued")


class ManageError(PeftlabError):
    """A delete or rename that the store's state does not allow (the web API answers 409)."""


def _rmtree(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink(missing_ok=True)


class ManageTable(Database):
    def _folders(self, experiment: str, run: str | None = None) -> list[Path]:
        """The run's (or the experiment's) folders under runs/ and exports/, checked names."""
        d = self.run_dir(experiment, run or "x")
        if run is None:
            d = d.parent
        out = [d]
        exports = (self.root / "exports").resolve()
        out.append(exports / experiment / run if run else exports / experiment)
        return out

    def delete_run(self, run_id: int) -> dict[str, Any]:
        """Delete a run that is not running: its row, curves, logs and folders."""
        with self.tx() as c:
            row = c.execute("SELECT id, experiment, name, status FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id}")
            if row["status"] == "running":
                raise ManageError(f"run {row['name']!r} is running; cancel it first, then delete it")
            folders = self._folders(row["experiment"], row["name"])
            c.execute("DELETE FROM curves WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM logs WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM runs WHERE id=?", (run_id,))
            c.execute("UPDATE experiments SET updated_at=? WHERE name=?", (time.time(), row["experiment"]))
        for f in folders:
            _rmtree(f)
        return {"run_id": run_id, "experiment": row["experiment"], "run": row["name"]}

    def delete_experiment(self, name: str) -> dict[str, Any]:
        """Delete an experiment with every run of it (rows, curves, logs, folders). Refused while a
        run of it is running or queued."""
        with self.tx() as c:
            if c.execute("SELECT 1 FROM experiments WHERE name=?", (name,)).fetchone() is None:
                raise NotFound(f"no experiment {name!r}")
            rows = c.execute("SELECT id, name, status FROM runs WHERE experiment=?", (name,)).fetchall()
            busy = [r["name"] for r in rows if r["status"] in BUSY]
            if busy:
                raise ManageError(f"experiment {name!r} has runs that are running or queued ({', '.join(busy)}); "
                                  "cancel them first")
            folders = self._folders(name)
            ids = [r["id"] for r in rows]
            for rid in ids:
                c.execute("DELETE FROM curves WHERE run_id=?", (rid,))
                c.execute("DELETE FROM logs WHERE run_id=?", (rid,))
            c.execute("DELETE FROM runs WHERE experiment=?", (name,))
            c.execute("DELETE FROM experiments WHERE name=?", (name,))
        for f in folders:
            _rmtree(f)
        return {"experiment": name, "runs": len(ids)}

    def rename_experiment(self, old: str, new: str, rehash: Callable[[dict[str, Any]], str] | None = None,
                          yaml_text: Callable[[dict[str, Any]], str] | None = None) -> dict[str, Any]:
        """Rename an experiment: its row, its runs (their configs say the new name; `rehash(config)`
        gives each run's config hash under it) and its folders. Refused while a run of it is
        running or queued, or when `new` is taken."""
        if not isinstance(new, str) or not NAME_RE.fullmatch(new):
            raise PeftlabError(f"{new!r}: an experiment name uses letters, digits, '.', '_' and '-' only")
        if new == old:
            raise PeftlabError("the new name is the current name")
        with self.tx() as c:
            exp = c.execute("SELECT * FROM experiments WHERE name=?", (old,)).fetchone()
            if exp is None:
                raise NotFound(f"no experiment {old!r}")
            if c.execute("SELECT 1 FROM experiments WHERE name=?", (new,)).fetchone() is not None:
                raise ManageError(f"an experiment named {new!r} exists already; choose another name")
            rows = c.execute("SELECT * FROM runs WHERE experiment=?", (old,)).fetchall()
            busy = [r["name"] for r in rows if r["status"] in BUSY]
            if busy:
                raise ManageError(f"experiment {old!r} has runs that are running or queued ({', '.join(busy)}); "
                                  "wait for them or cancel them first")
            config = json.loads(exp["config_json"])
            config["name"] = new
            text = yaml_text(config) if yaml_text is not None else exp["config_yaml"]
            c.execute("""INSERT INTO experiments(name, task, model, config_yaml, config_json, base_dir, created_at,
                         updated_at) VALUES (?,?,?,?,?,?,?,?)""",
                      (new, exp["task"], exp["model"], text, json.dumps(config), exp["base_dir"], exp["created_at"],
                       time.time()))
            old_prefix, new_prefix = f"runs/{old}/", f"runs/{new}/"
            for r in rows:
                cfg = json.loads(r["config_json"])
                if isinstance(cfg.get("experiment"), dict):
                    cfg["experiment"]["name"] = new
                info = json.loads(r["info_json"]) if r["info_json"] else None
                if info:
                    for k, v in info.items():
                        if isinstance(v, str) and v.startswith(old_prefix):
                            info[k] = new_prefix + v[len(old_prefix):]
                chash = rehash(cfg) if rehash is not None else r["config_hash"]
                c.execute("UPDATE runs SET experiment=?, config_json=?, config_hash=?, info_json=? WHERE id=?",
                          (new, json.dumps(cfg), chash, json.dumps(info) if info is not None else None, r["id"]))
            c.execute("DELETE FROM experiments WHERE name=?", (old,))
            moved: list[tuple[Path, Path]] = []
            try:
                for src, dest in zip(self._folders(old), self._folders(new), strict=True):
                    if src.exists():
                        if dest.exists():
                            raise ManageError(f"{dest} exists already; move it away first")
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        os.rename(src, dest)
                        moved.append((src, dest))
            except BaseException:
                for src, dest in reversed(moved):
                    os.rename(dest, src)
                raise
        return {"experiment": new, "was": old, "runs": len(rows)}
