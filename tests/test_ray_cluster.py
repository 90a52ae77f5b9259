"""`--executor ray` on a real multi-node Ray cluster on this machine: a head node on 127.0.0.1 and a
worker node on 127.0.0.2, each its own raylet, object store and worker processes (Ray's
`cluster_utils.Cluster`, as Ray's own fault-tolerance tests use), one CPU each. Two runs of an
experiment are spread over both; once a checkpoint of the run on the worker node has reached the
driver, the whole worker node is killed (its raylet and every process of it, SIGKILL). The run
resumes on the surviving head node from that checkpoint and ends with the metrics and loss curve of
the undisturbed run; the store holds each run once, each curve step once, and everything a run
leaves (adapter, predictions, scores)."""

from __future__ import annotations

import math
import os
import re
import threading
import time

import pytest
from conftest import needs_shared, one_ray_at_a_time, tiny_causal, write_experiment

from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment
from peftlab.train.trainer import last_checkpoint

pytestmark = needs_shared

HEAD, WORKER = "127.0.0.1", "127.0.0.2"  # loopback addresses only: nothing of the cluster leaves this machine
# a dead node is found within about two seconds (Ray's default: 15)
FAST_HEALTH_CHECK = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                     "health_check_failure_threshold": 4}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (cluster, its worker node, a RayExecutor on it)
    with one_ray_at_a_time(tmp_path_factory):
        yield from _two_nodes()


def _two_nodes():  # noqa: ANN202
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'peftlab[ray]')")
    # Ray's single-machine mode names every node of this machine by the loopback address (not the
    # machine's own address): read when Ray is imported, and looked up when it resolves an address
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    from peftlab.scale.ray_executor import RayExecutor

    if ray.is_initialized():
        ray.shutdown()  # another test's local instance: this test needs its own cluster
    saved, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": HEAD, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECK})
    try:
        worker = cluster.add_node(num_cpus=1, node_ip_address=WORKER)
        cluster.wait_for_nodes()
        ex = RayExecutor(address=cluster.address, echo=lambda *_: None)
        nodes = sorted((n["NodeManagerAddress"], n["Resources"].get("CPU")) for n in ex.ray.nodes() if n["Alive"])
        assert nodes == [(HEAD, 1.0), (WORKER, 1.0)], nodes
        yield cluster, worker, ex
        ex.ray.shutdown()
    finally:
        cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _attempts(store: Store, run_id: int) -> list[tuple[float, str, int]]:
    """(time, node address, attempt) of each start of a run on a Ray worker, from its log."""
    out = []
    for r in store.logs(run_id):
        m = re.search(r"running on Ray node .*\((\S+)\), worker pid \d+ \(attempt (\d+)\)", r["message"])
        if m:
            out.append((r["ts"], m.group(1), int(m.group(2))))
    return out


def test_a_lost_node_s_run_resumes_on_the_surviving_node(tmp_path_factory: pytest.TempPathFactory,
                                                         two_nodes) -> None:  # noqa: ANN001
    from ray._private import state

    cluster, worker, ex = two_nodes
    ex.ray.get(ex.sink.drain.remote())  # the driver's mailbox is up, on the driver's node (never the one lost)
    sinks = [a for a in state.actors().values() if a["ActorClassName"] == "EventSink"]
    assert [a["Address"]["IPAddress"] for a in sinks] == [HEAD], sinks
    work = tmp_path_factory.mktemp("nodes")
    body = tiny_causal([{"name": "lora", "label": "one"}, {"name": "lora", "label": "two"}], threads=1,
                       max_steps=16, checkpoint_every=4)
    body["name"] = "nodes"
    store = Store(tmp_path_factory.mktemp("driver") / "store")
    t0 = time.time()
    seen: list[tuple[float, str]] = []  # what the test saw happen, for the timeline
    killed: dict[str, object] = {}

    def kill_the_worker_node_once_a_checkpoint_is_home() -> None:
        deadline, shipped = time.time() + 240, set()
        while time.time() < deadline:
            for run in store.runs():
                ckpt = last_checkpoint(store.run_dir("nodes", run.name) / "checkpoints")
                if ckpt is not None and (run.name, ckpt.name) not in shipped:
                    shipped.add((run.name, ckpt.name))
                    seen.append((time.time(), f"{run.name}: {ckpt.name} reached the driver's store"))
                on = _attempts(store, run.id)
                if ckpt is not None and on and on[-1][1] == WORKER and not killed:
                    cluster.remove_node(worker, allow_graceful=False)
                    killed.update(at=time.time(), run=run.name, checkpoint=ckpt.name,
                                  step=(run.progress or {}).get("step"))
                    seen.append((killed["at"], f"test: worker node {WORKER} killed (raylet and all its processes, "
                                               f"SIGKILL), {run.name} at step {killed['step']}"))
            if killed or (store.runs() and all(r.status == "done" for r in store.runs())):
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_worker_node_once_a_checkpoint_is_home, daemon=True)
    killer.start()
    runs = run_experiment(plan(write_experiment(work, body)), store, isolation=ex, echo=lambda *_: None)
    killer.join(timeout=5)
    assert killed, "no run reached a checkpoint on the worker node before it ended"
    assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
    [hit] = [r for r in runs if r.name == killed["run"]]
    [calm] = [r for r in runs if r.name != killed["run"]]
    # placement: one run on each node; the lost node's run started again on the head, once
    assert [(a, n) for _, n, a in _attempts(store, calm.id)] == [(1, HEAD)]
    assert [(a, n) for _, n, a in _attempts(store, hit.id)] == [(1, WORKER), (2, HEAD)]
    assert hit.info["executor"]["attempts"] == 2 and calm.info["executor"]["attempts"] == 1
    assert hit.info["executor"]["node"].endswith(f"({HEAD})")
    text = "\n".join(r["message"] for r in store.logs(hit.id))
    died = re.search(rf"Ray worker on .*\({WORKER}\) \(pid \d+\) died at step \d+ \((\w+)[^)]*\); attempt 2 of 3 "
                     r"resumes from (checkpoint-(\d+))", text)
    assert died, text
    assert died.group(1) == "NodeDiedError"  # the node, not just a worker process, was lost
    assert int(died.group(3)) >= int(str(killed["checkpoint"]).split("-")[1])
    assert f"resuming from {died.group(2)}" in text
    # the same results as the undisturbed run
    for k, v in calm.metrics.items():
        assert math.isclose(hit.metrics[k], v, rel_tol=1e-6, abs_tol=1e-6), (k, hit.metrics[k], v)
    a, b = store.curves(calm.id)["train_loss"], store.curves(hit.id)["train_loss"]
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 17))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b, strict=True)) <= 1e-6
    assert hit.cost["train_tokens"] == calm.cost["train_tokens"]
    # nothing lost, nothing twice: one row per run, one value per curve step, every file of the run
    assert sorted(r.name for r in store.runs()) == ["one", "two"]
    rows = store._query("SELECT run_id, name, step, COUNT(*) AS n FROM curves GROUP BY run_id, name, step")
    assert rows and all(r["n"] == 1 for r in rows)
    assert {r["name"] for r in rows if r["run_id"] == hit.id} == {r["name"] for r in rows if r["run_id"] == calm.id}
    for r in runs:
        assert any(r.file("artifact").glob("adapter_model.*"))
        assert len(r.file("predictions").read_text().splitlines()) == 8 and r.file("scores").is_file()
        assert not (store.run_dir("nodes", r.name) / "checkpoints").exists()
    events = list(seen)
    for r in runs:
        for row in store.logs(r.id):
            m = row["message"]
            if any(w in m for w in ("submitted", "running on", "died", "resuming", "finished")):
                events.append((row["ts"], f"{r.name}: {m[:150]}"))
    print("\nnode-loss timeline:\n" + "\n".join(f"{t - t0:6.1f}s {m}" for t, m in sorted(events)))
