"""The event stream between a run's worker and the driver's store.

A run on a Ray worker executes `recipe.execute_run` unchanged, against a private store in a
temporary folder of the worker: an `EventStore`, which records everything as a store does (so
the recipe reads back what it wrote) and also appends each write to `events.jsonl` beside it.
The worker ships those events, each new complete checkpoint and, at the end, the run folder to
the driver (`scale.task`), which replays them into its own store (`replay`): the same log
messages, curves, progress and results the run would have written there itself.

A run's end (`finish`) is held back by the driver until the run folder it names (adapter,
predictions, scores) has landed, so a driver killed in between never holds a `done` run whose
files are missing: it finds the run interrupted and resumes it from its last checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

from peftlab.store import Store

EVENTS_FILE = "events.jsonl"
# set for a worker process (`python -m peftlab.train.worker`, a process of a run over several
# devices) that records into an EventStore
EVENTS_ENV = "PEFTLAB_EVENTS"


class EventStore(Store):
    """A worker's private store: a store whose writes are also appended to `events.jsonl`."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.events_path = self.root / EVENTS_FILE
        self._quiet = False

    def _emit(self, kind: str, run_id: int, **body: Any) -> None:
        if self._quiet:
            return
        line = json.dumps({"kind": kind, "run_id": run_id, "ts": time.time(), **body}, default=str)
        with open(self.events_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def log(self, run_id: int, message: str, level: str = "info", ts: float | None = None) -> None:
        super().log(run_id, message, level, ts)
        self._emit("log", run_id, message=message, level=level)

    def log_points(self, run_id: int, step: int, values: dict[str, float]) -> None:
        super().log_points(run_id, step, values)
        self._emit("points", run_id, step=step, values={k: float(v) for k, v in values.items()})

    def update(self, run_id: int, **fields: Any) -> None:
        super().update(run_id, **fields)
        self._emit("update", run_id, fields=fields)

    def finish(self, run_id: int, status: str, **fields: Any) -> None:
        self._quiet = True  # one `finish` event, not the `update` it is made of
        try:
            super().finish(run_id, status, **fields)
        finally:
            self._quiet = False
        self._emit("finish", run_id, status=status, fields=fields)

    def mark_interrupted(self, run_id: int, reason: str, pid: int | None = None) -> bool:
        moved = super().mark_interrupted(run_id, reason, pid)
        self._emit("interrupted", run_id, reason=reason)
        return moved


class FollowerStore(Store):
    """The store as the other processes of a run over several devices see it: they read the
    run's record, and write nothing (the first process records the run)."""

    def log(self, run_id: int, message: str, level: str = "info", ts: float | None = None) -> None:
        pass

    def log_points(self, run_id: int, step: int, values: dict[str, float]) -> None:
        pass

    def update(self, run_id: int, **fields: Any) -> None:
        pass

    def finish(self, run_id: int, status: str, **fields: Any) -> None:
        pass

    def mark_interrupted(self, run_id: int, reason: str, pid: int | None = None) -> bool:
        return False


def worker_store(root: str | Path) -> Store:
    """The store a worker process opens: a follower in the other processes of a run over several
    devices, an EventStore where the run's events are shipped, else the store itself."""
    from peftlab.scale.devices import rank

    if rank() > 0:
        return FollowerStore(root)
    return EventStore(root) if os.environ.get(EVENTS_ENV) else Store(root)


def read_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete lines of `events.jsonl` after `offset`, and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()], offset + end


# Fields of a run's record that belong to the driver, not to the worker that sends an update.
DRIVER_FIELDS = ("status", "pid", "host", "heartbeat", "started_at", "finished_at")


def replay(store: Store, run_id: int, event: dict[str, Any], progress_extra: dict[str, Any]) -> dict[str, Any] | None:
    """Write one event of a worker into the driver's store. A `finish` is returned, not
    written: the caller applies it once the run's folder has landed (`finish`)."""
    kind = event["kind"]
    if kind == "log":
        store.log(run_id, event["message"], event.get("level", "info"), ts=event.get("ts"))
    elif kind == "points":
        store.log_points(run_id, int(event["step"]), event["values"])
    elif kind == "update":
        fields = {k: v for k, v in event["fields"].items() if k not in DRIVER_FIELDS}
        if isinstance(fields.get("progress"), dict):
            fields["progress"] = {**fields["progress"], **progress_extra}
        if fields:
            store.update(run_id, **fields)
    elif kind == "finish":
        return event
    return None  # "interrupted": the driver decides (retry, or mark it so itself)


def finish(store: Store, run_id: int, event: dict[str, Any], executor_info: dict[str, Any]) -> None:
    """Apply a held `finish`: the run's end as the worker recorded it, with where it ran."""
    fields = {k: v for k, v in event["fields"].items() if k not in DRIVER_FIELDS}
    if isinstance(fields.get("info"), dict):
        fields["info"] = {**fields["info"], "executor": executor_info}
    store.finish(run_id, event["status"], **fields)


# -- folders as bytes ------------------------------------------------------------
def pack(folder: Path, skip: tuple[str, ...] = ()) -> bytes:
    """A folder's files as an uncompressed tar (adapters and checkpoints hardly compress),
    less the top-level entries named in `skip`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.name not in skip:
                    tar.add(entry, arcname=entry.name)
    return buf.getvalue()


def unpack(data: bytes, into: Path, whole: bool = False) -> None:
    """Extract a `pack`ed folder into `into`, replacing its top-level entries of the same names
    (`whole`: replacing the folder itself, in one rename: a checkpoint is there complete or not
    at all). Extracted beside it first, then moved in: a reader never sees half a file."""
    into.parent.mkdir(parents=True, exist_ok=True)
    staging = into.parent / f".{into.name}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            members = tar.getmembers()
            for m in members:  # only plain files and folders, inside the folder
                p = Path(m.name)
                if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                    raise ValueError(f"refused a packed entry {m.name!r}")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **safe)
        if whole:
            shutil.rmtree(into, ignore_errors=True)
            staging.rename(into)
            return
        into.mkdir(parents=True, exist_ok=True)
        for entry in staging.iterdir():
            target = into / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            entry.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
