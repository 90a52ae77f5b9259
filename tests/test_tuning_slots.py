"""One worker slot means one training at a time, the tuning driver's runs included (#25): the
web service's driver hands its trials and final runs to the scheduler instead of training them
beside the scheduler's own runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_shared, tiny_causal, write_experiment

from peftlab.queue import jobs
from peftlab.queue.handoff import ENV
from peftlab.queue.scheduler import Scheduler, _Job
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


class _Thread:
    """A worker 'process' that is a thread of this one (the run trains in-process)."""

    def __init__(self, store: Store, run_id: int) -> None:
        from peftlab.train.recipe import execute_run

        self.pid, self.returncode = 0, None
        self.t = threading.Thread(target=execute_run, args=(store, run_id), daemon=True)
        self.t.start()

    def poll(self) -> int | None:
        return None if self.t.is_alive() else 0

    def send_signal(self, sig: int) -> None:  # a stop: let the thread's run finish
        pass

    def wait(self, timeout: float | None = None) -> int:
        self.t.join(timeout)
        return 0


class InProcessScheduler(Scheduler):
    def _spawn(self, run_id: int) -> None:
        proc: Any = _Thread(self.store, run_id)
        with self._lock:
            self.jobs[run_id] = _Job(run_id, proc)


def test_the_drivers_runs_take_the_schedulers_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    store = Store(tmp_path / "store")
    other = tiny_causal(["lora", "ia3"], max_steps=12)
    other["name"] = "other"
    jobs.enqueue(plan(write_experiment(tmp_path, other, "other.yaml")), store)  # waiting for the worker
    tuned = tiny_causal(["lora"], max_steps=3)
    tuned["data"]["max_validation_examples"] = 12
    tuned["tuning"] = {"trials": 2, "steps_per_trial": 2}
    sched = InProcessScheduler(store, concurrency=1, poll_seconds=0.05)
    sched.start()
    monkeypatch.setenv(ENV, str(os.getpid()))  # as the service starts its driver
    try:
        finals = run_experiment(plan(write_experiment(tmp_path, tuned)), store, echo=lambda *_: None)
        deadline = time.time() + 120
        while any(r.status != "done" for r in store.runs()) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        sched.stop()
    runs = store.runs()
    assert [r.status for r in runs] == ["done"] * 5, [(r.name, r.status, r.error) for r in runs]
    assert [r.name for r in finals] == ["lora"] and finals[0].status == "done"
    spans = sorted((r.started_at, r.finished_at, f"{r.experiment}/{r.name}") for r in runs)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"{a} and {b} trained at the same time with one worker slot"
