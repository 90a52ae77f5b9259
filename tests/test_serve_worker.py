"""The run queue and the scheduler, and the restart test: SIGKILL the server and the worker
mid-run, start again, and the run resumes from its checkpoint; nothing finished is lost.

`start_server` (a real `peftlab serve` process on 127.0.0.1 and a free port) is shared with
the browser test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DATA, MODELS, STORIES, needs_shared

from peftlab.queue import jobs
from peftlab.store import Store

REPO = Path(__file__).resolve().parents[1]


# -- helpers shared with the browser test ---------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", TQDM_DISABLE="1",
               PEFTLAB_MODEL_PATH=str(MODELS), PEFTLAB_DATA_PATH=str(DATA))
    return env


def start_server(store: Path, port: int, *args: str, log: Path | None = None) -> subprocess.Popen:
    """`peftlab serve` as a real process; returns once /api/health answers."""
    out = open(log or store.parent / f"server-{port}.log", "ab")  # noqa: SIM115 - kept by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "peftlab.cli", "--store", str(store), "serve", "--host", "127.0.0.1",
         "--port", str(port), "--poll-seconds", "0.3", *args],
        env=server_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    out.close()
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {(store.parent / f'server-{port}.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code in (200, 401):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start in 90 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(fn: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


def tiny_request(name: str, methods: list[dict], **training: Any) -> dict[str, Any]:
    return {"name": name, "model": str(STORIES), "task": "causal-lm",
            "data": {"train": str(DATA / "statista" / "train.jsonl"),
                     "validation": str(DATA / "statista" / "validation.jsonl"),
                     "test": str(DATA / "statista" / "test.jsonl"),
                     "prompt": "Table: {table}\nTitle:", "target": "title",
                     "max_train_examples": 32, "max_validation_examples": 4, "max_test_examples": 4},
            "methods": methods,
            "training": {"batch_size": 4, "max_source_length": 48, "max_target_length": 16, "logging_steps": 1,
                         "threads": 1, **training},
            "evaluation": {"max_new_tokens": 4, "batch_size": 4}}


# -- queue helpers without processes ---------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _fake_run(store: Store, name: str) -> int:
    store.save_experiment("q", "causal-lm", "m", {}, None, None)
    run, _ = store.upsert_run("q", name, "lora", "h-" + name, {"experiment": {}, "entry": {}})
    return run.id


def test_resume_stale_requeues_dead_runs_a_bounded_number_of_times(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    rid = _fake_run(store, "a")
    alive = _fake_run(store, "b")
    assert store.claim(alive, pid=os.getpid())  # a live process holds it: left alone
    for i in range(jobs.MAX_AUTO_RESUMES):
        assert store.claim(rid, pid=_dead_pid())
        assert jobs.resume_stale(store) == [rid], i
        r = store.run(rid)
        assert r.status == "queued" and r.error is None
    assert store.claim(rid, pid=_dead_pid())
    assert jobs.resume_stale(store) == []
    r = store.run(rid)
    assert r.status == "interrupted" and "stopped" in r.error
    assert "not resumed automatically" in store.logs(rid)[-1]["message"]
    assert store.run(alive).status == "running"


def test_scheduler_respects_concurrency_and_requeues_on_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.queue.scheduler import Scheduler

    store = Store(tmp_path / "store")
    ids = [_fake_run(store, n) for n in ("a", "b", "c")]
    spawned: list[int] = []

    class FakeProc:
        def __init__(self, rid: int) -> None:
            self.pid, self.returncode, self.rid = os.getpid(), None, rid

        def poll(self) -> int | None:
            return self.returncode

        def send_signal(self, sig: int) -> None:
            store.mark_interrupted(self.rid, "stopped by the user (Ctrl-C); run again to resume")
            self.returncode = -sig

        def wait(self, timeout: float | None = None) -> int | None:
            return self.returncode

    def fake_spawn(self: Scheduler, run_id: int) -> None:
        from peftlab.queue.scheduler import _Job

        spawned.append(run_id)
        self.store.release(run_id, os.getpid())
        self.jobs[run_id] = _Job(run_id, FakeProc(run_id))  # type: ignore[arg-type]

    monkeypatch.setattr(Scheduler, "_spawn", fake_spawn)
    s = Scheduler(store, concurrency=2)
    assert s.tick() == ids[:2] and s.busy() == 2
    assert s.tick() == []  # both slots busy
    s.jobs[ids[0]].proc.returncode = 0  # first one finished (but left the run 'running': a crash)
    assert s.tick() == [ids[2]]
    r = store.run(ids[0])
    assert r.status == "interrupted" and "exited with code 0" in r.error
    s.stop()  # a clean stop queues the running ones again, to resume at the next start
    assert {store.run(i).status for i in ids[1:]} == {"queued"}
    assert "service stopped" in store.logs(ids[1])[-1]["message"]


def test_cancel_running_run_sends_sigterm(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    rid = _fake_run(store, "a")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert store.claim(rid, pid=child.pid)
        store.update(rid, progress={"step": 7, "max_steps": 10})
        r = jobs.cancel(store, rid, wait=2.0)
        assert child.wait(timeout=10) in (-signal.SIGTERM, -signal.SIGKILL)
        assert r.status == "interrupted" and r.error.startswith("cancelled by the user at step 7")
    finally:
        child.kill()


# -- the real thing ---------------------------------------------------------------------
@needs_shared
def test_restart_after_sigkill_resumes_and_loses_nothing(tmp_path: Path) -> None:
    from peftlab.queue.jobs import make_plan
    from peftlab.train.runner import run_experiment

    store_dir = tmp_path / "store"
    body = tiny_request("restart", [{"name": "zero-shot"}, {"name": "lora", "options": {"r": 4}}],
                        max_steps=16, checkpoint_every=2)
    # A finished run first (in this process: quick), then the server queues the rest.
    zs_only = {**body, "methods": [{"name": "zero-shot"}]}
    assert run_experiment(make_plan(zs_only), Store(store_dir), isolation="inprocess",
                          echo=lambda *_: None)[0].status == "done"
    port = free_port()
    server = start_server(store_dir, port)
    base = f"http://127.0.0.1:{port}"
    worker_pid = None
    try:
        r = httpx.post(f"{base}/api/experiments", json=body, timeout=120)
        assert r.status_code == 201, r.text
        assert [x["status"] for x in r.json()["runs"]] == ["done", "queued"]
        store = Store(store_dir)

        def lora_mid_run() -> Any:
            run = store.find_run("restart", "lora")
            ckpt = store.run_dir("restart", "lora") / "checkpoints"
            has_ckpt = ckpt.is_dir() and any((d / "trainer_state.json").is_file() for d in ckpt.iterdir())
            step = (run.progress or {}).get("step") or 0
            return run if run.status == "running" and has_ckpt and step >= 3 else None

        run = wait_for(lora_mid_run, 240, "lora to pass a checkpoint", every=0.1)
        zs = store.find_run("restart", "zero-shot")
        assert zs.status == "done"
        step_at_kill = run.progress["step"]
        worker_pid = run.pid
        assert worker_pid and worker_pid != server.pid
        os.kill(server.pid, signal.SIGKILL)
        os.kill(worker_pid, signal.SIGKILL)
        server.wait(timeout=10)
        wait_for(lambda: not jobs.pid_alive(worker_pid), 10, "the worker to die")
        assert store.find_run("restart", "lora").status == "running"  # nobody has noticed yet

        server = start_server(store_dir, port)
        done = wait_for(lambda: (r := store.find_run("restart", "lora")).status in ("done", "failed") and r, 240,
                        "the resumed run to finish")
        assert done.status == "done", done.error
        messages = [x["message"] for x in store.logs(done.id)]
        assert any(m.startswith(jobs.AUTO_RESUME_MARK) for m in messages), messages
        assert any(m.startswith("resuming from checkpoint-") for m in messages), messages
        assert done.metrics and done.cost["trainable_params"] > 0
        curve_steps = [s for s, _ in store.curves(done.id)["train_loss"]]
        assert min(curve_steps) <= step_at_kill and max(curve_steps) == 16
        zs2 = store.find_run("restart", "zero-shot")
        assert zs2.status == "done" and zs2.metrics == zs.metrics and zs2.finished_at == zs.finished_at
        health = httpx.get(f"{base}/api/health", timeout=10).json()
        assert health["worker"]["resumed_at_start"] == [done.id]
    finally:
        stop(server)
        if worker_pid and jobs.pid_alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
