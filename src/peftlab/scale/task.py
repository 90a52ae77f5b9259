"""The Ray task of one run, on a worker that shares no folder with the driver.

`execute_remote(payload, sink)`:
1. A private store in a temporary folder of the worker (an `EventStore`) gets the experiment and
   the run's record (its id, config and state, as the driver's store has them) from the payload,
   and the run's last checkpoint, shipped from the driver as bytes, in the run's folder.
2. The run executes there, unchanged (`recipe.execute_run`; a run over several devices: the
   worker command launched by Accelerate, its first process recording into the same store).
3. A forwarder thread ships, every half second, the new events and each new complete checkpoint
   to the driver's `EventSink` actor. When the sink is gone (the driver died) the run stops.
4. The run folder (adapter, predictions, scores, logs; not the checkpoints, which the driver
   already has) is the task's result, through Ray's object store; the temporary folder goes.

Nothing here knows where the driver's store is: the payload carries the run, not a path to it.
"""

from __future__ import annotations

import _thread
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from peftlab.scale.devices import worker_command
from peftlab.scale.events import EVENTS_ENV, EventStore, pack, read_events, unpack

SHIP_EVERY = 0.5  # seconds between two shipments of events
SEND_TIMEOUT = 120.0  # a driver that takes longer to take a shipment is taken for gone


class EventSink:
    """The driver's mailbox (a Ray actor): workers put shipments, the driver drains them."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, list[dict[str, Any]], tuple[str, bytes] | None]] = []

    def put(self, run_id: int, attempt: int, events: list[dict[str, Any]], checkpoint: tuple[str, bytes] | None) -> bool:
        self.items.append((run_id, attempt, events, checkpoint))
        return True

    def drain(self) -> list[tuple[int, int, list[dict[str, Any]], tuple[str, bytes] | None]]:
        out, self.items = self.items, []
        return out


class Forwarder(threading.Thread):
    """Ships a run's new events and checkpoints to the sink, until closed."""

    def __init__(self, sink: Any, run_id: int, attempt: int, events_path: Path, ckpt_dir: Path) -> None:
        super().__init__(name="peftlab-forwarder", daemon=True)
        self.sink, self.run_id, self.attempt = sink, run_id, attempt
        self.events_path, self.ckpt_dir = events_path, ckpt_dir
        self.offset = 0
        self.shipped = self._checkpoint_key()  # the one it resumes from: the driver has it
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def _checkpoint_key(self) -> tuple[str, tuple[str, ...]] | None:
        from peftlab.train.trainer import last_checkpoint

        ckpt = last_checkpoint(self.ckpt_dir)
        if ckpt is None:
            return None
        try:  # its files: a process of a run over several devices may add its RNG state after the first
            return ckpt.name, tuple(sorted(p.name for p in ckpt.iterdir()))
        except FileNotFoundError:  # rotated away meanwhile
            return None

    def send(self, events: list[dict[str, Any]], checkpoint: tuple[str, bytes] | None = None) -> None:
        import ray

        ray.get(self.sink.put.remote(self.run_id, self.attempt, events, checkpoint), timeout=SEND_TIMEOUT)

    def flush(self) -> None:
        events, self.offset = read_events(self.events_path, self.offset)
        checkpoint = None
        key = self._checkpoint_key()
        if key is not None and key != self.shipped:
            try:
                checkpoint = (key[0], pack(self.ckpt_dir / key[0]))
                self.shipped = key
            except OSError:  # rotated away while packed: the next one follows
                checkpoint = None
        if events or checkpoint:
            self.send(events, checkpoint)

    def run(self) -> None:
        while not self._stop_event.wait(SHIP_EVERY):
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 - the driver is gone: nobody records this run
                self.error = e
                _thread.interrupt_main()
                return

    def close(self) -> None:
        """Stop, and ship what is left (synchronously: the driver has every event before the
        task's result)."""
        self._stop_event.set()
        if self.is_alive():
            self.join()
        if self.error is None:
            self.flush()


def execute_remote(payload: dict[str, Any], sink: Any) -> dict[str, Any]:
    """Run one run on this worker (see the module); returns its status and its run folder."""
    os.environ.update(payload["env"])
    root = Path(tempfile.mkdtemp(prefix="peftlab-run-"))
    record = payload["record"]
    run_id = int(record["id"])
    try:
        store = EventStore(root)
        exp = payload["experiment"]
        store.save_experiment(exp["name"], exp["task"], exp["model"], exp["config"], exp["config_yaml"], exp["base_dir"])
        store.adopt(record)
        run_dir = store.run_dir(record["experiment"], record["name"])
        run_dir.mkdir(parents=True, exist_ok=True)
        if payload.get("checkpoint"):
            name, blob = payload["checkpoint"]
            unpack(blob, run_dir / "checkpoints" / name, whole=True)
        if payload.get("journal"):  # a tuning trial with a pruner reads the study so far
            from peftlab.tune.study import JOURNAL

            (root / JOURNAL).write_bytes(payload["journal"])
        fwd = Forwarder(sink, run_id, payload["attempt"], store.events_path, run_dir / "checkpoints")
        fwd.send([{"kind": "started", "pid": os.getpid(), "node": node_name(), "root": str(root), "ts": time.time()}])
        fwd.start()
        try:
            status = _execute(store, run_id, payload)
        finally:
            fwd.close()
        return {"status": status, "files": pack(run_dir, skip=("checkpoints",))}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _execute(store: EventStore, run_id: int, payload: dict[str, Any]) -> str:
    threads, devices = int(payload["threads"]), int(payload["devices"])
    if devices == 1:
        import torch

        from peftlab.train.recipe import execute_run

        torch.set_num_threads(threads)  # the run's CPU share (training.threads, when set, is the same)
        return execute_run(store, run_id)
    env = {**os.environ, EVENTS_ENV: "1", "PEFTLAB_PARENT_PID": str(os.getpid()), "OMP_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(worker_command(store.root, run_id, devices), env=env, check=False)
    run = store.run(run_id)
    status = run.status if run is not None else "failed"
    if status == "running":  # the launcher died before the run ended: the driver retries it
        return f"crashed (exit code {proc.returncode})"
    return status


def node_name() -> str:
    """How a node is named in the store and the Jobs list: its host name and address."""
    try:
        import ray

        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001
        ip = "?"
    return f"{socket.gethostname()} ({ip})"
