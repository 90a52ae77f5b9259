"""The scheduler: claims queued runs from the store and runs each in a worker process.

    python -m peftlab.queue STORE [--concurrency N]     # standalone, no web server

`peftlab serve` starts one Scheduler in a background thread (unless --no-worker). Each run
executes in `python -m peftlab.train.worker STORE RUN_ID`, a process of its own: its peak
memory is its own, a crash cannot take the service down, and the web requests never train.

Restart safety: on start (and every few seconds) runs marked running whose process is gone
are reaped (`store.reap_stale()`) and queued again; the engine resumes a claimed run from
its checkpoints. A run whose worker process is still alive (the server was killed but the
worker was not) is left to finish. On a clean shutdown the workers are stopped and their
runs queued again, to resume at the next start.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.queue import jobs
from peftlab.store import Store, pid_alive

log = logging.getLogger("peftlab.queue")


@dataclass
class _Job:
    run_id: int
    proc: subprocess.Popen
    started: float = field(default_factory=time.time)


class Scheduler:
    """`executor`: runs go to it (`peftlab serve --executor ray`: a Ray cluster) instead of worker
    processes here; `concurrency` is then how many are submitted at once (0: all)."""

    def __init__(self, store: Store, concurrency: int = 1, poll_seconds: float = 1.0, executor: Any = None) -> None:
        if concurrency < 1 and executor is None:
            raise ValueError("concurrency must be at least 1")
        self.executor = executor
        self.store = store
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.jobs: dict[int, _Job] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.started_at: float | None = None
        self.resumed: list[int] = []

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        self.resumed = jobs.resume_stale(self.store)
        if self.resumed:
            log.info("queued again after a restart: runs %s", self.resumed)
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._loop, name="peftlab-scheduler", daemon=True)
        self._thread.start()

    def stop(self, requeue: bool = True, timeout: float = 20.0) -> None:
        """Stop scheduling; stop running workers and (by default) queue their runs again."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        if self.executor is not None:
            ids = list(self.executor.flights)
            self.executor.cancel_all(self.store, "the service stopped")
            for rid in ids if requeue else []:
                jobs.requeue(self.store, rid, "the service stopped; queued again, it resumes from its last "
                                              "checkpoint at the next start")
            return
        with self._lock:
            running = list(self.jobs.values())
        for j in running:
            if j.proc.poll() is None:
                j.proc.send_signal(signal.SIGTERM)
        for j in running:
            try:
                j.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                j.proc.kill()
                j.proc.wait()
            run = self.store.run(j.run_id)
            if requeue and run is not None and run.status in ("running", "interrupted"):
                jobs.requeue(self.store, j.run_id, "the service stopped; queued again, it resumes from its last "
                                                   "checkpoint at the next start")
        with self._lock:
            self.jobs.clear()

    # -- the loop -------------------------------------------------------------
    def _loop(self) -> None:
        last_reap = time.time()
        while not self._stop.is_set():
            try:
                self.tick()
                if time.time() - last_reap > 5:
                    jobs.resume_stale(self.store)
                    last_reap = time.time()
            except Exception:  # noqa: BLE001 - the loop must survive a bad run record
                log.exception("scheduler tick failed")
            self._stop.wait(self.poll_seconds)

    def tick(self) -> list[int]:
        """Collect finished workers, then start queued runs up to the concurrency. Returns started ids."""
        self._collect()
        started: list[int] = []
        for run in self.store.queued():
            if (self.concurrency and self.busy() >= self.concurrency) or self._stop.is_set():
                break
            if not self.store.claim(run.id):
                continue
            self._spawn(run.id)
            started.append(run.id)
        return started

    def busy(self) -> int:
        """Runs executing on this machine now: ours, plus those other live processes hold (a
        `peftlab run` in a terminal, or a worker that outlived a killed server). With an executor:
        the runs submitted to it."""
        if self.executor is not None:
            return len(self.executor.flights)
        with self._lock:
            ours = {rid for rid, j in self.jobs.items() if j.proc.poll() is None}
        host = socket.gethostname()
        others = {r.id for r in self.store.runs()
                  if r.status == "running" and r.host == host and pid_alive(r.pid)}
        return len(ours | others)

    def _spawn(self, run_id: int) -> None:
        if self.executor is not None:
            self.executor.submit(self.store, run_id)
            return
        run = self.store.run(run_id)
        assert run is not None
        run_dir = self.store.run_dir(run.experiment, run.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        out = open(run_dir / "worker.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "peftlab.train.worker", str(self.store.root), str(run_id)],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C on the server is not delivered to the workers
            )
        finally:
            out.close()
        self.store.release(run_id, proc.pid)
        self.store.log(run_id, f"started in worker process {proc.pid}")
        with self._lock:
            self.jobs[run_id] = _Job(run_id, proc)

    def _collect(self) -> None:
        if self.executor is not None:  # replay the workers' events; land the runs that ended
            self.executor.poll(self.store, timeout=0.0)
            return
        with self._lock:
            done = [j for j in self.jobs.values() if j.proc.poll() is not None]
            for j in done:
                del self.jobs[j.run_id]
        for j in done:
            code = j.proc.returncode
            why = "was killed (out of memory?)" if code in (-9, 137) else f"exited with code {code}"
            # only if the run is still marked running by that process (a finished run has moved on)
            if self.store.mark_interrupted(j.run_id, f"worker process {why} before finishing; Retry resumes "
                                                     "from the last checkpoint", pid=j.proc.pid):
                self.store.log(j.run_id, f"worker process {why}", "error")

    def status(self) -> dict[str, Any]:
        with self._lock:
            active = [{"run_id": j.run_id, "pid": j.proc.pid, "since": j.started} for j in self.jobs.values()
                      if j.proc.poll() is None]
        if self.executor is not None:
            active = [{"run_id": f.run_id, "pid": f.pid, "node": f.node, "attempt": f.attempt}
                      for f in self.executor.flights.values()]
        return {"running": self._thread is not None and self._thread.is_alive(), "concurrency": self.concurrency,
                "executor": "ray" if self.executor is not None else "local",
                "active": active, "started_at": self.started_at, "resumed_at_start": self.resumed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m peftlab.queue",
                                 description="Run queued peftlab runs from a store, N at a time.")
    ap.add_argument("store", type=Path)
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sched = Scheduler(Store(args.store), args.concurrency)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sched.start()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    sched.stop()
    return 0
