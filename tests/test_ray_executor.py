"""`--executor ray` on a real local Ray instance (2 CPUs, started once per test session): runs side
by side as the resources allow, recorded in the driver's store from workers that share no folder
with it; a worker killed mid-run resumes from its last checkpoint (shipped to the driver) and
ends with the metrics of an undisturbed run; bad input is refused clearly."""

from __future__ import annotations

import math
import os
import pickle
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import needs_shared, one_ray_at_a_time, tiny_causal, write_experiment

from peftlab.errors import ConfigError, PeftlabError
from peftlab.queue.jobs import run_summary
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment
from peftlab.train.trainer import last_checkpoint

pytestmark = needs_shared


@pytest.fixture(scope="module")
def ray_executor(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a RayExecutor
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'peftlab[ray]')")
    from peftlab.scale.ray_executor import RayExecutor

    with one_ray_at_a_time(tmp_path_factory):
        ex = RayExecutor(num_cpus=2, echo=lambda *_: None)  # a local instance, on 127.0.0.1 only
        assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ex.ray.nodes())
        yield ex
        ex.ray.shutdown()


def _quiet(*_: object) -> None:
    pass


def _started(store: Store, run_id: int) -> list[tuple[float, int, str]]:
    """(time, worker pid, private folder) of each attempt of a run, from its log."""
    out = []
    for r in store.logs(run_id):
        m = re.search(r"worker pid (\d+) \(attempt \d+\), in a private folder (\S+)", r["message"])
        if m:
            out.append((r["ts"], int(m.group(1)), m.group(2)))
    return out


def test_four_runs_two_at_a_time_without_a_shared_folder(tmp_path_factory: pytest.TempPathFactory,
                                                           ray_executor) -> None:  # noqa: ANN001
    from peftlab.scale.ray_executor import payload

    work, driver = tmp_path_factory.mktemp("four"), tmp_path_factory.mktemp("driver")
    body = tiny_causal(["lora", "ia3", "prompt-tuning", {"name": "lora", "label": "lora-r4", "r": 4}], threads=1)
    body["name"] = "four"
    store = Store(driver / "store")
    said: list[str] = []
    runs = run_experiment(plan(write_experiment(work, body)), store, isolation=ray_executor, echo=said.append)
    assert [r.status for r in runs] == ["done"] * 4, [r.error for r in runs]
    assert any(line.startswith("[ray] ") for line in said)  # the status line
    spans = []
    for r in runs:
        assert r.info["executor"]["kind"] == "ray" and r.info["executor"]["attempts"] == 1
        assert r.file("artifact").is_dir() and any(r.file("artifact").glob("adapter_model.*"))
        assert len(r.file("predictions").read_text().splitlines()) == 8
        assert r.file("scores").is_file()
        assert not (store.run_dir("four", r.name) / "checkpoints").exists()
        assert len(store.curves(r.id)["train_loss"]) == 6
        [(t0, _, root)] = _started(store, r.id)
        assert not root.startswith(str(driver)) and not Path(root).exists()  # a private folder, removed after
        assert run_summary(r)["node"] == r.info["executor"]["node"]
        spans.append((t0, r.finished_at))
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most == 2  # two slots of one CPU: two runs at once, never more
    # what a worker is sent names no path of the driver's store: it could not write there
    from peftlab.scale.placement import request_for

    sent = payload(store, runs[0].id, 1, request_for(runs[0].config["experiment"], None, False))
    assert str(driver) not in repr(pickle.loads(pickle.dumps(sent)))


def test_a_killed_worker_resumes_from_its_checkpoint_to_the_same_metrics(
        tmp_path_factory: pytest.TempPathFactory, ray_executor) -> None:  # noqa: ANN001
    work = tmp_path_factory.mktemp("fault")
    body = tiny_causal([{"name": "lora", "label": "calm"}, {"name": "lora", "label": "killed"}], threads=1,
                       max_steps=32, checkpoint_every=8)
    body["name"] = "fault"
    store = Store(tmp_path_factory.mktemp("driver") / "store")
    t_start = time.time()
    killed: dict[str, object] = {}

    def kill_once_a_checkpoint_is_home() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            run = store.find_run("fault", "killed")
            if run is not None:
                ckpt = last_checkpoint(store.run_dir("fault", "killed") / "checkpoints")
                started = _started(store, run.id)
                if ckpt is not None and started:
                    os.kill(started[0][1], signal.SIGKILL)
                    killed.update(at=time.time(), checkpoint=ckpt.name, step=(run.progress or {}).get("step"))
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_a_checkpoint_is_home, daemon=True)
    killer.start()
    calm, hit = run_experiment(plan(write_experiment(work, body)), store, isolation=ray_executor, echo=_quiet)
    killer.join(timeout=5)
    assert killed, "the run ended before a checkpoint reached the driver"
    assert calm.status == "done" and hit.status == "done", (calm.error, hit.error)
    assert hit.info["executor"]["attempts"] == 2 and calm.info["executor"]["attempts"] == 1
    logs = store.logs(hit.id)
    text = "\n".join(r["message"] for r in logs)
    died = re.search(r"died at step \d+ .*attempt 2 of 3 resumes from (checkpoint-(\d+))", text)
    assert died, text
    # the driver's newest checkpoint when the kill landed: the one seen before it, or a later one
    # that arrived between the look and the signal
    assert int(died.group(2)) >= int(str(killed["checkpoint"]).split("-")[1])
    assert f"resuming from {died.group(1)}" in text
    for k, v in calm.metrics.items():
        assert math.isclose(hit.metrics[k], v, rel_tol=1e-6, abs_tol=1e-6), (k, hit.metrics[k], v)
    a, b = store.curves(calm.id)["train_loss"], store.curves(hit.id)["train_loss"]
    assert [s for s, _ in b] == list(range(1, 33))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b, strict=True)) <= 1e-6
    assert hit.cost["train_tokens"] == calm.cost["train_tokens"]
    timeline = [f"{r['ts'] - t_start:6.1f}s {r['message'][:110]}" for r in logs
                if any(w in r["message"] for w in ("submitted", "running on", "died", "resuming", "finished"))]
    timeline.insert(sum(1 for r in logs if r["ts"] < killed["at"]) and 2,  # type: ignore[operator]
                    f"{killed['at'] - t_start:6.1f}s test: SIGKILL to the worker at step {killed['step']} "
                    f"({killed['checkpoint']} on the driver)")
    print("\nfault timeline:\n" + "\n".join(timeline))


def test_bad_input_is_refused_clearly(tmp_path: Path, ray_executor, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                      capsys: pytest.CaptureFixture) -> None:
    from peftlab.scale import ray_executor as rex
    from peftlab.scale.placement import Node, check_fits, request_for

    t0 = time.time()  # an address where no cluster listens: a message within seconds, not a hang
    with pytest.raises(PeftlabError, match=r"--ray-address 127\.0\.0\.1:1: cannot reach a Ray cluster there"):
        rex._reachable("127.0.0.1:1")
    assert time.time() - t0 < 5
    with pytest.raises(ConfigError, match="HOST:PORT"):
        rex._reachable("nowhere")
    from peftlab.cli import main

    exp = write_experiment(tmp_path, tiny_causal(["lora"]))
    t0 = time.time()
    assert main(["--store", str(tmp_path / "s"), "run", str(exp), "--executor", "ray", "--ray-address",
                 "127.0.0.1:1"]) == 2
    assert time.time() - t0 < 10
    assert "cannot reach a Ray cluster there" in capsys.readouterr().err
    assert main(["--store", str(tmp_path / "s"), "run", str(exp), "--ray-address", "auto"]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # the extra not installed
    with pytest.raises(PeftlabError, match=r"pip install 'peftlab\[ray\]'"):
        rex.require_ray()
    monkeypatch.undo()
    # more memory than the largest node has: refused with the figures, before any run
    body = tiny_causal(["lora"])
    body["resources"] = {"memory_mb": 10**9}
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"needs 1,000,000,000 MB of memory by resources\.memory_mb, and the "
                                          r"largest node of the cluster \(.*\) has [\d,]+ MB"):
        run_experiment(plan(write_experiment(tmp_path, body)), store, isolation=ray_executor, echo=_quiet)
    assert store.runs() == []
    estimated = request_for({"training": {}}, 4096.0, False)  # the run's own estimate, on a small node
    with pytest.raises(ConfigError, match=r"needs 4,096 MB of memory by its estimate .* has 1,024 MB"):
        check_fits("lora", estimated, [Node("small (10.0.0.9)", 4, 0, 1024.0)])


class _DriverKilled(BaseException):
    """The driver process dying: nothing of it runs any more (not even its Ctrl-C handling)."""


def test_a_restarted_driver_carries_on(tmp_path_factory: pytest.TempPathFactory, ray_executor,  # noqa: ANN001
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver dies once one run is done and the other has a checkpoint in the driver's store;
    what a killed driver leaves is made as the kill leaves it (its Ray tasks end with it, its pid
    is gone). Started again, it skips the finished run and resumes the other from its checkpoint."""
    import subprocess

    from peftlab.scale.ray_executor import RayExecutor

    work = tmp_path_factory.mktemp("restart")
    body = tiny_causal(["zero-shot", {"name": "lora", "label": "long"}], threads=1, max_steps=32, checkpoint_every=8)
    body["name"] = "restart"
    exp = write_experiment(work, body)
    store = Store(tmp_path_factory.mktemp("driver") / "store")
    real_poll = RayExecutor.poll

    def poll_then_die(self, store_: Store, timeout: float = 0.5):  # noqa: ANN001, ANN202
        out = real_poll(self, store_, timeout)
        base, long = store_.find_run("restart", "zero-shot"), store_.find_run("restart", "long")
        if base.status == "done" and last_checkpoint(store_.run_dir("restart", "long") / "checkpoints") \
                and long.status == "running":
            raise _DriverKilled
        return out

    monkeypatch.setattr(RayExecutor, "poll", poll_then_die)
    with pytest.raises(_DriverKilled):
        run_experiment(plan(exp), store, isolation=ray_executor, echo=_quiet)
    monkeypatch.undo()
    for f in list(ray_executor.flights.values()):  # a dead driver's tasks die with it
        ray_executor.ray.cancel(f.ref, force=True)
    ray_executor.flights.clear()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    long = store.find_run("restart", "long")
    store.release(long.id, gone.pid)  # held by a process that no longer exists
    base = store.find_run("restart", "zero-shot")
    kept = last_checkpoint(store.run_dir("restart", "long") / "checkpoints")
    said: list[str] = []
    again = run_experiment(plan(exp), store, isolation=ray_executor, echo=said.append)
    assert [r.status for r in again] == ["done", "done"], [r.error for r in again]
    assert again[0].finished_at == base.finished_at and again[0].metrics == base.metrics  # not redone
    assert any("zero-shot: already done, skipped" in s for s in said)
    assert any(f"long: running (resuming from {kept.name})" in s for s in said), said
    assert f"resuming from {kept.name}" in "\n".join(r["message"] for r in store.logs(long.id))
    assert [s for s, _ in store.curves(long.id)["train_loss"]] == list(range(1, 33))
