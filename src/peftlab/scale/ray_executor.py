"""Runs on a Ray cluster: `peftlab run EXP --executor ray [--ray-address auto]`, `peftlab serve
--executor ray`.

The driver (the CLI, or the web service's scheduler) claims runs in its store as always, then
submits each as a Ray task (`scale.task`) with the resources it needs (`scale.placement`); Ray
starts as many as the cluster holds and keeps the others waiting for a free slot. The driver
keeps the record: it drains the workers' events from its `EventSink` actor and replays them into
its store (logs, curves, progress with the node, results), keeps each run's latest checkpoint in
its store as it arrives, and unpacks each run's folder when the run ends.

Faults: a run whose worker died (killed, out of memory, its node lost) is submitted again with
the last checkpoint the driver holds, so it resumes on whichever worker Ray gives it, up to
`max_retries` times; then it stays interrupted, resumable. The driver's `EventSink` lives on the
driver's own node, so a lost worker node takes no run's events or checkpoints with it. A driver
killed and restarted finds its runs interrupted (its pid is gone: `store.reap_stale`) and queued
ones queued, and resumes them from the checkpoints in its store; finished runs stay finished.
Ctrl-C cancels the Ray tasks and leaves the runs interrupted, resumable.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

from peftlab.errors import ConfigError, PeftlabError
from peftlab.scale import events
from peftlab.scale.placement import Request, check_fits, cluster_nodes, estimates, request_for
from peftlab.scale.progress import StatusLine
from peftlab.store import TERMINAL, Store

INSTALL = "pip install 'peftlab[ray]'"
MAX_RETRIES = 2
CONNECT_TIMEOUT = 10.0  # seconds to reach a --ray-address before saying it cannot be reached
# the driver's environment that a worker needs to read models and data as the driver does (never
# the driver's store, and no credentials: give those to the cluster's runtime environment)
FORWARD_ENV = ("PEFTLAB_", "HF_", "TRANSFORMERS_", "TOKENIZERS_PARALLELISM")
KEEP_ENV_OUT = ("PEFTLAB_STORE", "PEFTLAB_TOKEN", "HF_TOKEN")


class Executor(Protocol):
    """What the runner and the scheduler ask of an executor."""

    def check(self, p: Any, checked: Any) -> None: ...
    def run(self, store: Store, run_id: int) -> str: ...
    def run_all(self, store: Store, run_ids: list[int], echo: Any = print) -> dict[int, str]: ...


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PeftlabError(f"--executor ray needs Ray, which is not installed here: {INSTALL} "
                           "(or pip install 'ray[default]>=2.40')") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Ray, connected: to the cluster at `address` ('auto': the one running on this machine), or to
    a local instance started here (`num_cpus`: its size, default every core). An address that
    cannot be reached fails within seconds, with the address and what to check."""
    if not address and "ray" not in sys.modules:
        # a local instance on the loopback interface only (Ray's single-machine mode): nothing of it is
        # reachable from other machines. Read when Ray is imported, so set before.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = require_ray()
    if address and address != "auto":
        _reachable(address)
    if ray.is_initialized():
        return ray
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": always a new instance, even when another Ray cluster runs on this machine (without
            # it ray.init attaches to that one, and refuses num_cpus: "When connecting to an existing cluster")
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - one line, with what to do
        where = f"--ray-address {address}" if address else "a local Ray instance"
        hint = " (start one with `ray start --head`, or leave out --ray-address for a local instance)" \
            if address == "auto" else ""
        raise PeftlabError(f"{where}: cannot connect to Ray: {type(e).__name__}: {e}{hint}") from None
    return ray


def _reachable(address: str) -> None:
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address}: give HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:10001, or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as e:
        raise PeftlabError(f"--ray-address {address}: cannot reach a Ray cluster there ({e.strerror or e}); check the "
                           "address, that `ray start --head` runs there, and that this machine may connect to "
                           "that port") from None


_REMOTE: dict[str, Any] = {}


def _here(ray: Any) -> dict[str, Any]:
    """Ray options that place an actor on the driver's own node: the driver's mailbox must not live
    on a worker node, whose loss would take every run's events and checkpoints with it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - no node of its own (a Ray Client driver): where Ray puts it
        return {}
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)} if node else {}


def _remote(ray: Any) -> dict[str, Any]:
    if not _REMOTE:
        from peftlab.scale.task import EventSink, execute_remote

        # one run a worker process: its peak memory is its own, as with a local worker process
        _REMOTE["task"] = ray.remote(max_calls=1, max_retries=0)(execute_remote)
        _REMOTE["sink"] = ray.remote(num_cpus=0)(EventSink)
    return _REMOTE


@dataclass
class _Flight:
    run_id: int
    ref: Any
    attempt: int
    request: Request
    node: str | None = None
    pid: int | None = None
    held: dict[str, Any] | None = None  # the run's `finish`, applied once its folder has landed


class RayExecutor:
    kind = "ray"

    def __init__(self, address: str | None = None, max_retries: int = MAX_RETRIES, num_cpus: int | None = None,
                 echo: Any = print) -> None:
        self.ray = connect(address, num_cpus)
        self.max_retries = max_retries
        self.echo = echo
        self.sink = _remote(self.ray)["sink"].options(**_here(self.ray)).remote()
        self.flights: dict[int, _Flight] = {}
        self._estimates: dict[tuple[str, str], float | None] = {}  # (experiment, method) -> MB
        self.line: StatusLine | None = None

    # -- before any run starts ---------------------------------------------------------
    def check(self, p: Any, checked: Any) -> None:
        """Refuse what no node of the cluster can run (devices, memory, CPUs, GPUs), before any run."""
        from peftlab.scale.devices import check_devices
        from peftlab.train.preflight import _task

        nodes = cluster_nodes(self.ray)
        gpus = max((n.gpus for n in nodes), default=0)
        check_devices(p, int(gpus), int(max((n.cpus for n in nodes), default=1)),
                      "the largest node of the Ray cluster")
        try:
            est = estimates(p.cfg, checked.model, checked.data, _task(p.cfg, checked.model, checked.data), gpus > 0)
        except Exception:  # noqa: BLE001 - an estimate is best effort: no memory reserved then
            est = {}
        exp = p.cfg.model_dump(mode="json")
        for entry in p.cfg.methods:
            self._estimates[(p.cfg.name, entry.name)] = est.get(entry.name)
            check_fits(entry.run_name, request_for(exp, est.get(entry.name), gpus > 0), nodes,
                       p.method_where(entry.run_name))

    def _request(self, store: Store, run: Any) -> Request:
        key = (run.experiment, run.method)
        if key not in self._estimates:  # a run queued by the web service: estimate it here, once
            self._estimates[key] = _estimate_run(run)
        gpus = any(n.gpus for n in cluster_nodes(self.ray))
        return request_for(run.config["experiment"], self._estimates[key], gpus)

    # -- submitting ------------------------------------------------------------------------
    def submit(self, store: Store, run_id: int, attempt: int = 1) -> bool:
        """Submit a claimed run as a Ray task. False: refused (no node can hold it; the run failed)."""
        run = store.run(run_id)
        assert run is not None
        req = self._request(store, run)
        try:
            check_fits(run.name, req, cluster_nodes(self.ray))
        except ConfigError as e:
            store.finish(run_id, "failed", error=f"ConfigError: {e}")
            store.log(run_id, str(e), "error")
            return False
        ref = _remote(self.ray)["task"].options(**req.ray_options(), name=f"peftlab {run.experiment}/{run.name}") \
            .remote(payload(store, run_id, attempt, req), self.sink)
        self.flights[run_id] = _Flight(run_id, ref, attempt, req)
        store.update(run_id, progress={"phase": "waiting for a Ray worker", "executor": "ray"})
        store.log(run_id, f"submitted to Ray (attempt {attempt}): {req.describe()}")
        return True

    # -- following -----------------------------------------------------------------------
    def poll(self, store: Store, timeout: float = 0.5) -> list[tuple[int, str]]:
        """Replay what the workers sent; land the runs that ended. Returns (run id, status) of
        each run that is over (done, failed, diverged; interrupted after its last retry)."""
        refs = {f.ref: f for f in self.flights.values()}
        if refs:
            ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        else:
            ready = []
            time.sleep(timeout)
        self._drain(store)  # after the wait: every event of a task that has ended is in the sink
        ended = []
        for ref in ready:
            status = self._land(store, refs[ref])
            if status is not None:
                ended.append((refs[ref].run_id, status))
        for f in list(self.flights.values()):  # cancelled by someone else (the web service's Cancel)
            cur = store.run(f.run_id)
            if cur is None or cur.status != "running":
                self.ray.cancel(f.ref, force=True)
                del self.flights[f.run_id]
        return ended

    def _drain(self, store: Store) -> None:
        for run_id, attempt, evs, checkpoint in self.ray.get(self.sink.drain.remote()):
            f = self.flights.get(run_id)
            if f is None or f.attempt != attempt:
                continue  # a cancelled run, or an attempt already given up
            for ev in evs:
                if ev["kind"] == "started":
                    f.node, f.pid = ev["node"], ev["pid"]
                    store.update(run_id, progress={"phase": "starting", "node": f.node, "executor": "ray"})
                    store.log(run_id, f"running on Ray node {f.node}, worker pid {f.pid} (attempt {attempt}), in "
                                      f"a private folder {ev['root']}", ts=ev.get("ts"))
                else:
                    held = events.replay(store, run_id, ev, {"node": f.node, "executor": "ray"})
                    if held is not None:
                        f.held = held
            if checkpoint is not None:
                self._keep_checkpoint(store, run_id, *checkpoint)

    def _keep_checkpoint(self, store: Store, run_id: int, name: str, blob: bytes) -> None:
        run = store.run(run_id)
        assert run is not None
        ckpt_dir = store.run_dir(run.experiment, run.name) / "checkpoints"
        events.unpack(blob, ckpt_dir / name, whole=True)
        for old in sorted(ckpt_dir.glob("checkpoint-*"), key=_step)[:-2]:  # the newest two, as the Trainer keeps
            shutil.rmtree(old, ignore_errors=True)

    def _land(self, store: Store, f: _Flight) -> str | None:
        ray = self.ray
        try:
            result = ray.get(f.ref)
        except ray.exceptions.TaskCancelledError:
            self.flights.pop(f.run_id, None)
            return None
        except ray.exceptions.RayTaskError as e:  # an error outside the recipe (which records its own)
            self.flights.pop(f.run_id, None)
            store.finish(f.run_id, "failed", error=f"the Ray task failed: {e}")
            store.log(f.run_id, f"the Ray task failed: {e}", "error")
            return "failed"
        except ray.exceptions.RayError as e:  # the worker or its node died, out of memory...
            return self._retry(store, f, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if result["status"] not in TERMINAL:
            return self._retry(store, f, result["status"])
        self.flights.pop(f.run_id, None)
        run = store.run(f.run_id)
        if run is None or run.status != "running":
            return None  # cancelled meanwhile
        run_dir = store.run_dir(run.experiment, run.name)
        events.unpack(result["files"], run_dir)
        if f.held is None:
            store.finish(f.run_id, "failed", error="the Ray worker ended without recording the run's end")
            return "failed"
        events.finish(store, f.run_id, f.held, {"kind": "ray", "node": f.node, "attempts": f.attempt})
        if result["status"] == "done":
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        if (run.config.get("trial") or {}).get("pruner", "none") != "none":
            _record_trial(store, f.run_id, run.config["trial"])
        return result["status"]

    def _retry(self, store: Store, f: _Flight, why: str) -> str | None:
        from peftlab.train.trainer import last_checkpoint

        self.flights.pop(f.run_id, None)
        run = store.run(f.run_id)
        if run is None or run.status != "running":
            return None
        step = (run.progress or {}).get("step")
        at = f" at step {step}" if step else ""
        where = f" on {f.node} (pid {f.pid})" if f.node else ""
        if f.attempt > self.max_retries:
            msg = (f"its Ray worker died {f.attempt} times (last{where}{at}: {why}); run again to resume from the "
                   "last checkpoint")
            store.mark_interrupted(f.run_id, msg)
            store.log(f.run_id, msg, "error")
            return "interrupted"
        ckpt = last_checkpoint(store.run_dir(run.experiment, run.name) / "checkpoints")
        msg = (f"Ray worker{where} died{at} ({why}); attempt {f.attempt + 1} of {self.max_retries + 1} resumes from "
               f"{ckpt.name if ckpt else 'the start'}")
        store.log(f.run_id, msg, "warning")
        if self.line is not None:
            self.line.say(f"{run.name}: {msg}")
        self.submit(store, f.run_id, f.attempt + 1)
        return None

    # -- blocking, for the CLI -------------------------------------------------------------
    def run_all(self, store: Store, run_ids: list[int], echo: Any = print) -> dict[int, str]:
        """Submit every run (Ray holds those that do not fit until a slot frees), follow them with
        a status line, and return their statuses."""
        statuses: dict[int, str] = {}
        self.line = StatusLine(echo)
        try:
            for rid in run_ids:
                if not self.submit(store, rid):
                    statuses[rid] = "failed"
            while len(statuses) < len(run_ids):
                for rid, status in self.poll(store):
                    statuses[rid] = status
                for rid in run_ids:  # cancelled elsewhere: what the store says
                    if rid not in statuses and rid not in self.flights:
                        cur = store.run(rid)
                        statuses[rid] = cur.status if cur is not None else "failed"
                waiting = {f.run_id for f in self.flights.values() if f.node is None}
                self.line.show(store, list(self.flights), waiting, len(statuses), len(run_ids))
        except KeyboardInterrupt:
            self.cancel_all(store, "stopped by the user (Ctrl-C or SIGTERM); run again to resume")
            raise
        finally:
            self.line.clear()
        return statuses

    def run(self, store: Store, run_id: int) -> str:
        """One run, to its end (a tuning trial: the tuner asks for them one at a time)."""
        return self.run_all(store, [run_id], self.echo)[run_id]

    def cancel_all(self, store: Store, reason: str) -> None:
        """Cancel every run in flight; each stays interrupted, resumable from the checkpoints here."""
        self._drain(store)
        for f in list(self.flights.values()):
            self.ray.cancel(f.ref, force=True)
            store.mark_interrupted(f.run_id, reason)
        self.flights.clear()


def _step(path: Any) -> int:
    return int(path.name.rsplit("-", 1)[-1]) if path.name.rsplit("-", 1)[-1].isdigit() else -1


def payload(store: Store, run_id: int, attempt: int, req: Request) -> dict[str, Any]:
    """What a worker gets: the run's record and experiment, its last checkpoint (bytes), its CPU
    share and devices, the environment to read models and data by; never the store's path."""
    from peftlab.train.trainer import last_checkpoint

    record = store.record(run_id)
    assert record is not None
    exp = store.experiment(record["experiment"]) or {}
    ckpt = last_checkpoint(store.run_dir(record["experiment"], record["name"]) / "checkpoints")
    trial = (store.run(run_id).config or {}).get("trial") or {}  # type: ignore[union-attr]
    journal = None
    if trial.get("pruner", "none") != "none":
        from peftlab.tune.study import JOURNAL

        path = store.root / JOURNAL
        journal = path.read_bytes() if path.is_file() else None
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV) and k not in KEEP_ENV_OUT}
    return {"record": record, "attempt": attempt, "threads": req.threads, "devices": req.devices, "env": env,
            "experiment": {k: exp.get(k) for k in ("name", "task", "model", "config", "config_yaml", "base_dir")},
            "checkpoint": (ckpt.name, events.pack(ckpt)) if ckpt else None, "journal": journal}


def _estimate_run(run: Any) -> float | None:
    """The memory estimate of a run queued without a preflight here (the web service's)."""
    try:
        from pathlib import Path

        from peftlab.config.schema import ExperimentConfig, MethodEntry
        from peftlab.data.prepare import prepare_data
        from peftlab.models import resolve_model
        from peftlab.train.preflight import _task

        cfg = ExperimentConfig.model_validate(run.config["experiment"])
        cfg = cfg.model_copy(update={"methods": [MethodEntry.model_validate(run.config["entry"])]})
        base = Path(run.config["base_dir"]) if run.config.get("base_dir") else None
        data = prepare_data(cfg.data, cfg.task, cfg.training.seed, base, read_test=False)
        rm = resolve_model(cfg.model, base)
        return estimates(cfg, rm, data, _task(cfg, rm, data), False).get(run.method)
    except Exception:  # noqa: BLE001 - best effort: no memory reserved
        return None


def _record_trial(store: Store, run_id: int, trial: dict[str, Any]) -> None:
    """A pruned study's trial ran on a worker against a copy of the study: record the values it
    reported there (its validation curve) in the driver's study, for the trials after it."""
    from peftlab.tasks.spec import spec
    from peftlab.tune.study import report_values

    run = store.run(run_id)
    main = spec(run.config["experiment"]["task"]).main_metric  # type: ignore[union-attr]
    report_values(store.root, trial, store.curves(run_id).get(f"val_{main}", []))
