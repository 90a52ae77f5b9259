"""The `runs` table and the run-state machine, as statements of the store.

    queued -> running                        claim (compare-and-set: one process wins)
    running -> done | failed | diverged      finish
    running -> interrupted                   mark_interrupted, reap_stale (its process died),
                                             mark_cancelled (a user cancelled it)
    queued -> interrupted                    cancel_queued (cancelled before it started)
    any -> queued                            requeue (resume, or `clear`: start afresh), upsert_run

Every transition is one transaction; those that can race (claim, interrupt, cancel) are
guarded by the state they leave, so two processes acting on one run cannot both win. When a transition is wanted (how many automatic resumes, who may
cancel what, which signal to send) is queue policy: `peftlab.queue.jobs`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.store.db import Database

TERMINAL = ("done", "failed", "diverged")
JSON_FIELDS = ("config_json", "resolved_json", "metrics_json", "cost_json", "info_json", "progress_json")

# A run marked running on another host cannot be checked by pid; it counts as abandoned once
# its heartbeat (refreshed at every logged step) is this old.
OTHER_HOST_STALE_SECONDS = 3600.0


@dataclass
class Run:
    id: int
    experiment: str
    name: str
    method: str
    status: str
    config_hash: str
    config: dict[str, Any]
    resolved: dict[str, Any] | None
    metrics: dict[str, Any] | None
    cost: dict[str, Any] | None
    info: dict[str, Any] | None
    progress: dict[str, Any] | None
    error: str | None
    diverged_step: int | None
    pid: int | None
    host: str | None
    heartbeat: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    root: Path | None = None  # the store folder it was read from

    @classmethod
    def from_row(cls, row: sqlite3.Row, root: Path | None = None) -> Run:
        d = dict(row)
        for f in JSON_FIELDS:
            raw = d.pop(f, None)
            d[f.removesuffix("_json")] = json.loads(raw) if raw else None
        return cls(**d, root=root)

    def file(self, key: str) -> Path | None:
        """A file or folder the run recorded in its info (`predictions`, `artifact`, ...), resolved
        against the store folder it is read from now. The store keeps these paths relative to
        its root, so a moved or renamed store keeps its artifacts; an older absolute path is
        mapped by its runs/<experiment>/<run>/ part when it no longer exists."""
        value = (self.info or {}).get(key)
        if not value:
            return None
        p = Path(value)
        if not p.is_absolute():
            return self.root / p if self.root is not None else p
        if p.exists() or self.root is None:
            return p
        rel = run_relative(p, self.experiment, self.name)
        return self.root / rel if rel is not None else p


ARTIFACT_KEYS = ("predictions", "artifact", "scores")


def run_relative(p: Path, experiment: str, name: str) -> Path | None:
    """`runs/<experiment>/<name>/...` of an absolute path inside some store folder, or None."""
    parts = p.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == ("runs", experiment, name):
            return Path(*parts[i:])
    return None


def _live(row: sqlite3.Row, host: str) -> bool:
    """Is the process that marked this run `running` still working on it?"""
    if row["status"] != "running":
        return False
    if row["host"] == host:
        return pid_alive(row["pid"])
    beat = row["heartbeat"]
    return beat is not None and time.time() - beat < OTHER_HOST_STALE_SECONDS


def pid_alive(pid: int | None) -> bool:
    """Is a process with this id running on this machine?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunsTable(Database):
    def _migrate(self) -> None:
        """Stores written before paths were kept relative: make every recorded artifact path
        relative to the store root (by its runs/<experiment>/<run>/ part), once."""
        super()._migrate()
        rows = self._query("SELECT id, experiment, name, info_json FROM runs WHERE info_json LIKE '%\"/%'")
        for r in rows:
            info = json.loads(r["info_json"])
            changed = False
            for key in ARTIFACT_KEYS:
                v = info.get(key)
                if isinstance(v, str) and Path(v).is_absolute():
                    rel = run_relative(Path(v), r["experiment"], r["name"])
                    if rel is not None:
                        info[key], changed = str(rel), True
            if changed:
                with self.tx() as c:
                    c.execute("UPDATE runs SET info_json=? WHERE id=?", (json.dumps(info), r["id"]))

    def relative(self, path: Path) -> str:
        """How a run's file is recorded: relative to the store root (see `Run.file`)."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    # -- create / reset -------------------------------------------------------
    def upsert_run(
        self, experiment: str, name: str, method: str, config_hash: str, config: dict[str, Any], force: bool = False
    ) -> tuple[Run, bool]:
        """Create the run, or reset it if its config changed or `force`. Returns (run, reset)."""
        now = time.time()
        with self.tx() as c:
            row = c.execute("SELECT * FROM runs WHERE experiment=? AND name=?", (experiment, name)).fetchone()
            reset = False
            if row is None:
                c.execute(
                    """INSERT INTO runs(experiment, name, method, status, config_hash, config_json, created_at)
                       VALUES (?,?,?,?,?,?,?)""",
                    (experiment, name, method, "queued", config_hash, json.dumps(config), now),
                )
                reset = True
            elif _live(row, socket.gethostname()):
                pass  # another process is on it; leave it alone
            elif force or row["config_hash"] != config_hash:
                c.execute("DELETE FROM curves WHERE run_id=?", (row["id"],))
                c.execute("DELETE FROM logs WHERE run_id=?", (row["id"],))
                c.execute(
                    """UPDATE runs SET method=?, status='queued', config_hash=?, config_json=?, resolved_json=NULL,
                       metrics_json=NULL, cost_json=NULL, info_json=NULL, progress_json=NULL, error=NULL,
                       diverged_step=NULL, pid=NULL, host=NULL, heartbeat=NULL, created_at=?, started_at=NULL,
                       finished_at=NULL WHERE id=?""",
                    (method, config_hash, json.dumps(config), now, row["id"]),
                )
                reset = True
            elif row["status"] in ("failed", "interrupted"):
                c.execute("UPDATE runs SET status='queued', error=NULL WHERE id=?", (row["id"],))
            out = c.execute("SELECT * FROM runs WHERE experiment=? AND name=?", (experiment, name)).fetchone()
        return Run.from_row(out, self.root), reset

    # -- queued -> running ----------------------------------------------------
    def claim(self, run_id: int, pid: int | None = None) -> bool:
        """Atomically move a queued/interrupted (or stale running) run to running for this process."""
        pid = pid or os.getpid()
        host = socket.gethostname()
        with self.tx() as c:
            row = c.execute("SELECT status, pid, host, heartbeat FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                return False
            stale = row["status"] == "running" and not _live(row, host)
            if row["status"] not in ("queued", "interrupted") and not stale:
                return False
            c.execute(
                "UPDATE runs SET status='running', pid=?, host=?, heartbeat=?, started_at=COALESCE(started_at, ?) WHERE id=?",
                (pid, host, time.time(), time.time(), run_id),
            )
        return True

    def release(self, run_id: int, pid: int) -> None:
        """Hand a claimed run over to another process (the worker subprocess)."""
        with self.tx() as c:
            c.execute("UPDATE runs SET pid=?, heartbeat=? WHERE id=?", (pid, time.time(), run_id))

    def update(self, run_id: int, **fields: Any) -> None:
        sets, args = [], []
        for k, v in fields.items():
            col = f"{k}_json" if f"{k}_json" in JSON_FIELDS else k
            sets.append(f"{col}=?")
            args.append(json.dumps(v) if col in JSON_FIELDS and v is not None else v)
        with self.tx() as c:
            c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", (*args, run_id))

    def record_evaluation(self, run_id: int, name: str, record: dict[str, Any]) -> bool:
        """Add (or replace) the extra evaluation `name` in a done run's info (`info.evaluations`),
        read and written in one transaction so two evaluations at once both stay. Returns whether
        the run was done (a run that is not keeps no evaluations: its results are not final)."""
        with self.tx() as c:
            row = c.execute("SELECT status, info_json FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None or row["status"] != "done":
                return False
            info = json.loads(row["info_json"]) if row["info_json"] else {}
            info.setdefault("evaluations", {})[name] = record
            c.execute("UPDATE runs SET info_json=? WHERE id=?", (json.dumps(info), run_id))
        return True

    def finish(self, run_id: int, status: str, **fields: Any) -> None:
        self.update(run_id, status=status, finished_at=time.time(), pid=None, **fields)

    # -- running -> interrupted -----------------------------------------------
    def mark_interrupted(self, run_id: int, reason: str, pid: int | None = None) -> bool:
        """A running run stops unfinished (with `pid`: only if that process still holds it).
        Returns whether the run moved."""
        sql = "UPDATE runs SET status='interrupted', error=?, pid=NULL WHERE id=? AND status='running'"
        args: tuple = (reason, run_id)
        if pid is not None:
            sql, args = sql + " AND pid=?", (*args, pid)
        with self.tx() as c:
            return c.execute(sql, args).rowcount > 0

    def reap_stale(self) -> list[int]:
        """Runs marked running whose process is gone (same host) become interrupted."""
        host = socket.gethostname()
        reaped = []
        for r in self._query("SELECT id, status, pid, host, heartbeat FROM runs WHERE status='running'"):
            if r["host"] == host and not _live(r, host):
                with self.tx() as c:  # re-check inside the transaction: it may have moved on
                    cur = c.execute(
                        "UPDATE runs SET status='interrupted', error=?, pid=NULL "
                        "WHERE id=? AND status='running' AND pid IS ?",
                        ("the process running it stopped (killed or crashed); run again to resume",
                         r["id"], r["pid"]),
                    )
                if cur.rowcount:
                    reaped.append(r["id"])
        return reaped

    def mark_cancelled(self, run_id: int, reason: str) -> bool:
        """A cancelled running run (its process was signalled) ends interrupted, resumable."""
        with self.tx() as c:
            cur = c.execute("UPDATE runs SET status='interrupted', pid=NULL, error=? WHERE id=? AND status IN "
                            "('running','interrupted')", (reason, run_id))
            return cur.rowcount > 0

    def cancel_queued(self, run_id: int, reason: str) -> bool:
        """A queued run that never started is set aside (interrupted) until retried."""
        with self.tx() as c:
            cur = c.execute("UPDATE runs SET status='interrupted', error=? WHERE id=? AND status='queued'",
                            (reason, run_id))
            return cur.rowcount > 0

    # -- back to queued -------------------------------------------------------
    def requeue(self, run_id: int, clear: bool = False) -> bool:
        """Put a run back in the queue. `clear` forgets its checkpoints, curves and results, so it
        starts afresh; otherwise it resumes from its last checkpoint. Returns whether it exists."""
        run = self.run(run_id)
        if run is None:
            return False
        if clear:
            shutil.rmtree(self.run_dir(run.experiment, run.name) / "checkpoints", ignore_errors=True)
        with self.tx() as c:
            if clear:
                c.execute("DELETE FROM curves WHERE run_id=?", (run_id,))
                c.execute(
                    """UPDATE runs SET status='queued', error=NULL, diverged_step=NULL, metrics_json=NULL,
                       cost_json=NULL, info_json=NULL, progress_json=NULL, pid=NULL, heartbeat=NULL,
                       started_at=NULL, finished_at=NULL WHERE id=?""", (run_id,))
            else:
                c.execute("UPDATE runs SET status='queued', error=NULL, pid=NULL, finished_at=NULL WHERE id=?",
                          (run_id,))
        return True

    # -- reads ----------------------------------------------------------------
    def run(self, run_id: int) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE id=?", (run_id,))
        return Run.from_row(rows[0], self.root) if rows else None

    def runs(self, experiment: str | None = None) -> list[Run]:
        if experiment is None:
            rows = self._query("SELECT * FROM runs ORDER BY id")
        else:
            rows = self._query("SELECT * FROM runs WHERE experiment=? ORDER BY id", (experiment,))
        return [Run.from_row(r, self.root) for r in rows]

    def find_run(self, experiment: str, name: str) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE experiment=? AND name=?", (experiment, name))
        return Run.from_row(rows[0], self.root) if rows else None

    def queued(self) -> list[Run]:
        """Queued runs, oldest first (the order they were queued in)."""
        rows = self._query("SELECT * FROM runs WHERE status='queued' ORDER BY created_at, id")
        return [Run.from_row(r, self.root) for r in rows]
