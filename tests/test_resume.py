"""Nothing lost: a killed run resumes from its last checkpoint to the same result as an
uninterrupted one; divergence, a full disk and Ctrl-C/SIGTERM are recorded, never silent.

The kill test drives real `peftlab run` processes (SIGKILL to the whole process group, then
SIGTERM to the CLI alone); the others run in-process on stories260k and take seconds.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import DATA, needs_shared, tiny_causal, write_experiment

from peftlab.store import Run, Store
from peftlab.train.callbacks import StoreCallback
from peftlab.train.runner import plan, run_experiment
from peftlab.train.trainer import PeftlabTrainer, last_checkpoint

pytestmark = needs_shared

# The resumed run must match the uninterrupted one to float32 round-off. Measured: identical
# (difference 0.0) for every logged train loss, the test loss and every metric.
TOLERANCE = 1e-6


def _kill_experiment() -> dict[str, Any]:
    exp = tiny_causal(["lora"], max_steps=40, checkpoint_every=10, threads=1)
    exp["data"]["max_train_examples"] = 320  # 40 steps of 8: one pass, no example seen twice
    exp["data"]["train"] = str(DATA / "statista" / "train.jsonl")
    return exp


def _inprocess(exp_path: Path, store: Store) -> list[Run]:
    threads = torch.get_num_threads()
    try:
        return run_experiment(plan(exp_path), store, isolation="inprocess", echo=lambda *a: None)
    finally:
        torch.set_num_threads(threads)  # `threads: 1` must not slow the rest of the session


def _cli(store: Path, exp_path: Path, log: Path) -> subprocess.Popen:
    """`peftlab run` as a user starts it, in its own process group (like a terminal job)."""
    out = open(log, "a", encoding="utf-8")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen(
        [sys.executable, "-m", "peftlab.cli", "--store", str(store), "run", str(exp_path)],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for_step(store: Store, proc: subprocess.Popen, step: int, log: Path, timeout: float = 300) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = store.runs()
        if runs and (runs[0].progress or {}).get("step", 0) >= step:
            return runs[0]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"run never reached step {step}:\n{log.read_text()[-3000:]}")


def _final(store: Store) -> tuple[Run, dict[str, list[tuple[int, float]]]]:
    (run,) = store.runs()
    return run, store.curves(run.id)


def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    exp_path = write_experiment(tmp_path, _kill_experiment())
    log = tmp_path / "cli.log"

    # Reference: the same experiment, never interrupted.
    (ref,) = _inprocess(exp_path, Store(tmp_path / "reference"))
    assert ref.status == "done", ref.error

    store = Store(tmp_path / "store")
    # 1. SIGKILL the whole process group (CLI and worker) after the step-10 checkpoint.
    proc = _cli(store.root, exp_path, log)
    run = _wait_for_step(store, proc, 12, log)
    ckpt_dir = store.run_dir("tiny", "lora") / "checkpoints"
    assert last_checkpoint(ckpt_dir) is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = store.run(run.id).progress["step"]
    assert 12 <= killed_at < 40, killed_at
    assert store.run(run.id).status == "running"  # nobody could record anything: SIGKILL
    first = last_checkpoint(ckpt_dir)
    assert first is not None and first.name in ("checkpoint-10", "checkpoint-20")

    # 2. Run the same command again: it resumes; SIGTERM the CLI alone past the next checkpoint.
    proc = _cli(store.root, exp_path, log)
    _wait_for_step(store, proc, int(first.name.split("-")[1]) + 12, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    stopped = store.run(run.id)
    assert stopped.status == "interrupted", (stopped.status, stopped.error)
    assert "run again to resume" in stopped.error
    second = last_checkpoint(ckpt_dir)
    assert second is not None and second.name in ("checkpoint-20", "checkpoint-30") and second != first

    # 3. And again: it finishes.
    proc = _cli(store.root, exp_path, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"running (resuming from {first.name})" in text and f"running (resuming from {second.name})" in text

    run, curves = _final(store)
    ref_run, ref_curves = _final(Store(tmp_path / "reference"))
    assert run.status == "done" and run.error is None
    # The store is consistent: one run, every step logged once, checkpoints cleaned up.
    assert [s for s, _ in curves["train_loss"]] == list(range(1, 41))
    assert not ckpt_dir.exists() and (store.run_dir("tiny", "lora") / "adapter" / "adapter_config.json").is_file()
    messages = [lg["message"] for lg in store.logs(run.id)]
    assert messages.count(f"resuming from {first.name}") == 1 and messages.count(f"resuming from {second.name}") == 1
    with sqlite3.connect(store.path) as c:
        assert c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # Same result as the uninterrupted run.
    diffs = [abs(a - b) for (_, a), (_, b) in zip(curves["train_loss"], ref_curves["train_loss"], strict=True)]
    print(f"\nkilled at step {killed_at}, SIGTERM at step {stopped.progress['step']}; "
          f"final train loss {curves['train_loss'][-1][1]:.6f} vs {ref_curves['train_loss'][-1][1]:.6f} "
          f"(max curve difference {max(diffs):.2e}); test metrics {run.metrics} vs {ref_run.metrics}")
    assert max(diffs) <= TOLERANCE
    assert run.metrics.keys() == ref_run.metrics.keys()
    for k, v in ref_run.metrics.items():
        assert math.isclose(run.metrics[k], v, abs_tol=TOLERANCE), (k, run.metrics[k], v)
    with open(run.file("predictions"), encoding="utf-8") as a, open(ref_run.file("predictions"), encoding="utf-8") as b:
        assert [json.loads(x)["output"] for x in a] == [json.loads(x)["output"] for x in b]
    # The cost covers the whole run, not only the part after the last restart.
    assert run.cost["train_tokens"] == ref_run.cost["train_tokens"] > 0
    assert run.cost["train_seconds"] > 0


def _small(tmp_path: Path, methods: list, **training: Any) -> Path:
    return write_experiment(tmp_path, tiny_causal(methods, checkpoint_every=2, **training))


def test_nan_loss_stops_the_run_as_diverged(tmp_path: Path) -> None:
    exp_path = _small(tmp_path, ["full"], learning_rate=1e4, max_steps=8)
    store = Store(tmp_path / "store")
    (run,) = _inprocess(exp_path, store)
    assert run.status == "diverged"
    assert run.diverged_step is not None and 1 < run.diverged_step <= 8
    assert f"at step {run.diverged_step}" in run.error and "lower the learning rate" in run.error
    steps = [s for s, _ in store.curves(run.id)["train_loss"]]
    assert steps == list(range(1, run.diverged_step))  # finite losses only, up to the step before
    assert run.metrics is None
    said: list[str] = []
    run_experiment(plan(exp_path), store, isolation="inprocess", echo=said.append)
    assert any("already diverged, skipped" in s for s in said)


DISK_FULL = {
    "oserror": OSError(28, "No space left on device"),
    # what torch.save raises when the disk fills while it writes optimizer.pt
    "torch-save": RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed"),
}


@pytest.mark.parametrize("error", list(DISK_FULL))
def test_disk_full_marks_the_run_failed_and_keeps_earlier_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    exp_path = _small(tmp_path, ["lora"])
    store = Store(tmp_path / "store")
    original = PeftlabTrainer._save_optimizer_and_scheduler
    calls: list[str] = []

    def save(self: PeftlabTrainer, output_dir: str) -> None:
        calls.append(output_dir)
        if len(calls) == 2:  # the second checkpoint: the disk is full
            raise DISK_FULL[error]
        original(self, output_dir)

    monkeypatch.setattr(PeftlabTrainer, "_save_optimizer_and_scheduler", save)
    (run,) = _inprocess(exp_path, store)
    assert run.status == "failed"
    assert "disk full" in run.error and "earlier checkpoints are kept" in run.error
    ckpt_dir = store.run_dir("tiny", "lora") / "checkpoints"
    good = last_checkpoint(ckpt_dir)
    assert good is not None and good.name == "checkpoint-2"
    state = json.loads((good / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (good / "optimizer.pt").is_file() and (good / "rng_state.pth").is_file()
    assert not (ckpt_dir / "checkpoint-4" / "trainer_state.json").exists()  # the cut-short one is ignored

    monkeypatch.undo()  # space freed: run again
    (run,) = _inprocess(exp_path, store)
    assert run.status == "done", run.error
    assert "resuming from checkpoint-2" in [lg["message"] for lg in store.logs(run.id)]
    assert [s for s, _ in store.curves(run.id)["train_loss"]] == list(range(1, 7))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_cleanly_as_interrupted_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    exp_path = _small(tmp_path, ["lora"])
    store = Store(tmp_path / "store")
    original = StoreCallback.on_log

    def on_log(self: StoreCallback, args: Any, state: Any, control: Any, **kw: Any) -> None:
        original(self, args, state, control, **kw)
        if state.global_step == 3:
            os.kill(os.getpid(), sig)  # as Ctrl-C, `kill PID` or a job scheduler would

    monkeypatch.setattr(StoreCallback, "on_log", on_log)
    # Ctrl-C as a terminal delivers it: a shell that starts a job in the background (`cmd &`, as
    # CI launchers may) starts it with SIGINT ignored, and Python then raises nothing.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    term_before = signal.getsignal(signal.SIGTERM)  # the default, or one a library installed (ray.init does)
    try:
        with pytest.raises(KeyboardInterrupt):
            _inprocess(exp_path, store)
    finally:
        signal.signal(signal.SIGINT, before)
    assert signal.getsignal(signal.SIGTERM) == term_before  # the handler is put back
    (run,) = store.runs()
    assert run.status == "interrupted" and "run again to resume" in run.error and run.pid is None
    assert last_checkpoint(store.run_dir("tiny", "lora") / "checkpoints").name == "checkpoint-2"

    monkeypatch.undo()
    said: list[str] = []
    (run,) = run_experiment(plan(exp_path), store, isolation="inprocess", echo=said.append)
    assert run.status == "done", run.error
    assert any("running (resuming from checkpoint-2)" in s for s in said)
    assert [s for s, _ in store.curves(run.id)["train_loss"]] == list(range(1, 7))


def test_validation_time_is_not_training_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Periodic validation runs inside the Trainer's loop, but its seconds do not count as
    training: train seconds and tokens/s stay comparable between runs that validate and not."""
    from peftlab.train import callbacks

    slow = 0.5
    real = callbacks.ValidationMetricCallback.on_evaluate

    def slow_eval(self: Any, *a: Any, **k: Any) -> None:
        time.sleep(slow)
        real(self, *a, **k)

    monkeypatch.setattr(callbacks.ValidationMetricCallback, "on_evaluate", slow_eval)
    exp = write_experiment(tmp_path, tiny_causal(["lora"], max_steps=6, eval_every=1))
    t0 = time.perf_counter()
    [run] = run_experiment(plan(exp), Store(tmp_path / "store"), isolation="inprocess", echo=lambda *_: None)
    wall = time.perf_counter() - t0
    assert run.status == "done", run.error
    assert len([v for _, v in Store(tmp_path / "store").curves(run.id)["val_rougeL"]]) == 6
    assert 0 < run.cost["train_seconds"] < wall - 6 * slow
