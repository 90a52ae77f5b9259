"""The store's database plumbing: one embedded SQLite file, its schema, its transactions, and
the safe paths of a store folder. The tables' statements live beside it, one module per table
(`runs.py`, `experiments.py`, `curves.py`, `datasets.py`); every SQL statement of peftlab is in
this package, and nothing outside it opens the database.

Layout of a store folder (default ./peftlab-store):
    peftlab.db                              experiments, runs, curves, logs, data sets
    runs/<experiment>/<run>/adapter/        trained adapter (PEFT format) or model/ (full)
    runs/<experiment>/<run>/checkpoints/    resumable Trainer checkpoints while running
    runs/<experiment>/<run>/predictions.jsonl
    uploads/<id>/                           data sets uploaded to the web service

Every write is one transaction; WAL mode lets readers (the CLI, the web service) work while
a run writes. Claiming a run is an atomic compare-and-set, so two processes sharing a store
never run the same method twice.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peftlab.config.schema import NAME_RE
from peftlab.errors import StoreError

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
-- data sets of the web service (uploads and server-side files); the name predates the move
-- of this table into the store and is kept so existing stores keep their data sets
CREATE TABLE IF NOT EXISTS serve_datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    origin TEXT NOT NULL,
    train TEXT NOT NULL,
    validation TEXT,
    test TEXT,
    mapping_json TEXT,
    info_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class Database:
    """A store folder and its database: connections, transactions, safe artifact paths."""

    def __init__(self, root: str | Path = "peftlab-store") -> None:
        self.root = Path(root)
        self.path = self.root / "peftlab.db"
        self.read_only = False
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root}: is a file, not a store folder; give --store a folder (new or existing)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.root}: cannot create the store folder ({e.strerror or e})") from None
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path}: is not a file; move it away, or use another --store folder")
        if self.path.is_file() and not os.access(self.root, os.W_OK | os.X_OK) or (
                self.path.is_file() and not os.access(self.path, os.W_OK)):
            self.read_only = True  # read a store on read-only media or someone else's: no writes
        try:
            if self.read_only:
                self._query("SELECT name FROM sqlite_master LIMIT 1")
            else:
                with self._connect() as c:
                    c.executescript(SCHEMA)
                self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(self._explain(e)) from None

    def _explain(self, e: sqlite3.Error) -> str:
        text = str(e)
        if "not a database" in text or "malformed" in text:
            return (f"{self.path}: not a readable peftlab database ({text}); restore it from a backup, or move it "
                    "away to start an empty store (the run folders under runs/ are kept)")
        if "readonly" in text or "read-only" in text:
            return f"{self.path}: the store is read-only ({text}); reading works, writing needs write access"
        return f"{self.path}: database error ({text})"

    def _migrate(self) -> None:
        """Bring an older store up to date (tables' own modules add their steps)."""

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = self.path.resolve().as_uri()
            try:  # read-only, but still reading a write-ahead log the last writer left
                c = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
                c.execute("SELECT 1 FROM sqlite_master LIMIT 1")
            except sqlite3.OperationalError:  # no way to open -shm beside it (read-only media)
                c = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=60, isolation_level=None)
        else:
            c = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        c.row_factory = sqlite3.Row
        if not self.read_only:
            c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA busy_timeout=60000")
        c.execute("PRAGMA foreign_keys=ON")
        return c

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all of it is written, or none."""
        if self.read_only:
            raise StoreError(f"{self.root}: the store is read-only (no write access); peftlab can read it but not "
                             "record anything in it: copy it somewhere writable, or fix its permissions")
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
