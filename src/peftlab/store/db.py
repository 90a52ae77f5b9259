"""The run store: one embedded SQLite database plus one artifact folder per run.

Layout of a store folder (default ./peftlab-store):
    peftlab.db                              experiments, runs, curves, logs
    runs/<experiment>/<run>/adapter/        trained adapter (PEFT format) or model/ (full)
    runs/<experiment>/<run>/checkpoints/    resumable Trainer checkpoints while running
    runs/<experiment>/<run>/predictions.jsonl

Every write is one transaction; WAL mode lets readers (the CLI, the web service) work while
a run writes. Claiming a run is an atomic compare-and-set, so two processes sharing a store
never run the same method twice.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.config.schema import NAME_RE

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    config_yaml TEXT,
    config_json TEXT NOT NULL,
    base_dir TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment TEXT NOT NULL REFERENCES experiments(name),
    name TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config_json TEXT NOT NULL,
    resolved_json TEXT,
    metrics_json TEXT,
    cost_json TEXT,
    info_json TEXT,
    progress_json TEXT,
    error TEXT,
    diverged_step INTEGER,
    pid INTEGER,
    host TEXT,
    heartbeat REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    UNIQUE(experiment, name)
);
CREATE TABLE IF NOT EXISTS curves (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
CREATE TABLE IF NOT EXISTS logs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    ts REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_run ON logs(run_id, ts);
"""

TERMINAL = ("done", "failed", "diverged")
JSON_FIELDS = ("config_json", "resolved_json", "metrics_json", "cost_json", "info_json", "progress_json")


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Run:
        d = dict(row)
        for f in JSON_FIELDS:
            raw = d.pop(f, None)
            d[f.removesuffix("_json")] = json.loads(raw) if raw else None
        return cls(**d)


# A run marked running on another host cannot be checked by pid; it counts as abandoned once
# its heartbeat (refreshed at every logged step) is this old.
OTHER_HOST_STALE_SECONDS = 3600.0


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


class Store:
    def __init__(self, root: str | Path = "peftlab-store") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "peftlab.db"
        with self._connect() as c:
            c.executescript(SCHEMA)

    # -- plumbing -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        c.row_factory = sqlite3.Row
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA busy_timeout=60000")
        c.execute("PRAGMA foreign_keys=ON")
        return c

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all of it is written, or none."""
        c = self._connect()
        try:
            c.execute("BEGIN IMMEDIATE")
            yield c
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            c.close()

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        c = self._connect()
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()

    def run_dir(self, experiment: str, run: str) -> Path:
        """The artifact folder of one run. Names come from experiment files, so they are checked:
        only NAME_RE names (no separators, no '..', no trailing newline), and the resolved path
        (symlinks followed) must stay inside the store's runs/ folder."""
        for part in (experiment, run):
            if not isinstance(part, str) or not NAME_RE.fullmatch(part):
                raise ValueError(f"unsafe name {part!r}: use letters, digits, '.', '_' and '-' only")
        runs = (self.root / "runs").resolve()
        d = (runs / experiment / run).resolve()
        if runs not in d.parents:
            raise ValueError(f"path {d} escapes the store ({runs})")
        return d

    # -- experiments ----------------------------------------------------------
    def save_experiment(
        self, name: str, task: str, model: str, config: dict[str, Any], yaml_text: str | None, base_dir: str | None
    ) -> None:
        now = time.time()
        with self.tx() as c:
            c.execute(
                """INSERT INTO experiments(name, task, model, config_yaml, config_json, base_dir, created_at, updated_at)
                   VALUES (?,?,?,?,?,?,?,?)
                   ON CONFLICT(name) DO UPDATE SET task=excluded.task, model=excluded.model,
                     config_yaml=excluded.config_yaml, config_json=excluded.config_json,
                     base_dir=excluded.base_dir, updated_at=excluded.updated_at""",
                (name, task, model, yaml_text, json.dumps(config), base_dir, now, now),
            )

    def experiment(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM experiments WHERE name=?", (name,))
        if not rows:
            return None
        d = dict(rows[0])
        d["config"] = json.loads(d.pop("config_json"))
        return d

    def experiments(self) -> list[dict[str, Any]]:
        rows = self._query(
            """SELECT e.name, e.task, e.model, e.created_at, e.updated_at,
                      COUNT(r.id) AS runs, SUM(r.status='done') AS done
               FROM experiments e LEFT JOIN runs r ON r.experiment = e.name
               GROUP BY e.name ORDER BY e.updated_at DESC"""
        )
        return [dict(r) for r in rows]

    # -- runs -----------------------------------------------------------------
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
        return Run.from_row(out), reset

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

    def finish(self, run_id: int, status: str, **fields: Any) -> None:
        self.update(run_id, status=status, finished_at=time.time(), pid=None, **fields)

    def mark_interrupted(self, run_id: int, reason: str) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE runs SET status='interrupted', error=?, pid=NULL WHERE id=? AND status='running'",
                (reason, run_id),
            )

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

    def run(self, run_id: int) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE id=?", (run_id,))
        return Run.from_row(rows[0]) if rows else None

    def runs(self, experiment: str | None = None) -> list[Run]:
        if experiment is None:
            rows = self._query("SELECT * FROM runs ORDER BY id")
        else:
            rows = self._query("SELECT * FROM runs WHERE experiment=? ORDER BY id", (experiment,))
        return [Run.from_row(r) for r in rows]

    def find_run(self, experiment: str, name: str) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE experiment=? AND name=?", (experiment, name))
        return Run.from_row(rows[0]) if rows else None

    # -- curves and logs ------------------------------------------------------
    def log_points(self, run_id: int, step: int, values: dict[str, float]) -> None:
        with self.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO curves(run_id, step, name, value) VALUES (?,?,?,?)",
                [(run_id, step, k, float(v)) for k, v in values.items()],
            )
            c.execute("UPDATE runs SET heartbeat=? WHERE id=?", (time.time(), run_id))

    def curves(self, run_id: int) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for r in self._query("SELECT step, name, value FROM curves WHERE run_id=? ORDER BY step", (run_id,)):
            out.setdefault(r["name"], []).append((r["step"], r["value"]))
        return out

    def log(self, run_id: int, message: str, level: str = "info") -> None:
        with self.tx() as c:
            c.execute("INSERT INTO logs(run_id, ts, level, message) VALUES (?,?,?,?)", (run_id, time.time(), level, message))

    def logs(self, run_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT ts, level, message FROM logs WHERE run_id=? ORDER BY ts", (run_id,))]
