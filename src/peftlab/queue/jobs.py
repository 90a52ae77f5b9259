"""The run queue's policy, on top of the store: enqueue, cancel, retry, auto-resume.

Usable without HTTP (the web service's routers are one caller):

    p = make_plan(experiment_dict)        # schema and methods, as `peftlab run` checks a file
    preflight(p)                          # peftlab.train.runner: data, model, methods applied
    enqueue(p, Store("peftlab-store"))    # then: python -m peftlab.queue peftlab-store

The queue *is* the store's `runs` table: a run with status `queued` waits for a worker;
`store.claim()` hands it to exactly one process. Nothing here runs a model, and nothing here
writes SQL: the run-state transitions are the store's (`peftlab.store.runs`); this module
decides when they happen (auto-resume limits, signals, what a user may cancel or retry).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

import yaml
from pydantic import ValidationError

from peftlab.errors import NotFound, PeftlabError
from peftlab.store import Run, Store, pid_alive
from peftlab.train.plan import Plan
from peftlab.train.runs import queue_run

AUTO_RESUME_MARK = "auto-resume"
MAX_AUTO_RESUMES = 3
CANCELLED = "cancelled by the user"


class JobError(PeftlabError):
    """A queue operation that is not possible in the run's current state (HTTP 409)."""


def _pydantic_msg(e: ValidationError) -> str:
    parts = []
    for er in e.errors():
        loc = ".".join(str(p) for p in er["loc"])
        parts.append(f"{loc}: {er['msg']}" if loc else er["msg"])
    return "; ".join(parts)


def make_plan(body: dict[str, Any]) -> Plan:
    """Validate an experiment dict exactly as the CLI validates a file (schema, methods)."""
    from peftlab.config import ExperimentConfig
    from peftlab.methods import validate_entry

    try:
        cfg = ExperimentConfig.model_validate(body)
    except ValidationError as e:
        raise PeftlabError(_pydantic_msg(e)) from None
    for m in cfg.methods:
        validate_entry(m, cfg.task, cfg.evaluation.num_beams)
    return Plan(cfg, None, yaml.safe_dump(body, sort_keys=False, allow_unicode=True))


def enqueue(p: Plan, store: Store, force: bool = False) -> list[Run]:
    """Record the experiment and queue each of its runs without running them.

    Same bookkeeping as `peftlab run` (same config hash, same run config), so a run queued
    here and a run started from the CLI are the same thing. Runs already done with the same
    configuration stay done (unless `force`); failed or interrupted ones are queued again. A
    finished run of the same name with other settings is never replaced without `force`
    (JobError: HTTP 409), as on the command line.
    """
    from peftlab.train.runner import check_replacement

    cfg = p.cfg
    if not force:
        try:
            check_replacement(p, store, [(e, cfg) for e in cfg.methods])
        except PeftlabError as e:
            raise JobError(str(e).split(": ", 1)[-1].replace("pass --replace (or --force)", "send force: true")) from None
    store.save_experiment(cfg.name, cfg.task, cfg.model.path, cfg.model_dump(mode="json"), p.yaml_text,
                          str(p.base_dir) if p.base_dir else None)
    out: list[Run] = []
    for entry in cfg.methods:
        run, reset = queue_run(p, store, entry, force)
        if reset:
            store.log(run.id, "queued")
        out.append(run)
    return out


def requeue(store: Store, run_id: int, message: str, clear: bool = False) -> None:
    """Put a run back in the queue. `clear` forgets its checkpoints and curves (start afresh)."""
    if not store.requeue(run_id, clear):
        raise NotFound(f"no run {run_id}")
    store.log(run_id, message)


def auto_resumes(store: Store, run_id: int) -> int:
    return sum(1 for r in store.logs(run_id) if r["message"].startswith(AUTO_RESUME_MARK))


def resume_stale(store: Store) -> list[int]:
    """Runs whose process died (server or worker killed, machine rebooted) go back in the queue.

    Each run is resumed automatically at most MAX_AUTO_RESUMES times (a run that kills its
    worker every time, e.g. out of memory, stays interrupted with the reason instead).
    The engine resumes a claimed run from its last checkpoint.
    """
    resumed = []
    for rid in store.reap_stale():
        n = auto_resumes(store, rid)
        if n >= MAX_AUTO_RESUMES:
            store.log(rid, f"its process stopped {n + 1} times; not resumed automatically (Retry to try again)",
                      "warning")
            continue
        requeue(store, rid, f"{AUTO_RESUME_MARK}: its process stopped (killed, crashed or the service restarted); "
                            "queued again, it resumes from its last checkpoint")
        resumed.append(rid)
    return resumed


def cancel(store: Store, run_id: int, wait: float = 15.0) -> Run:
    """Cancel a queued or running run. A running one gets SIGTERM (its checkpoints are kept)."""
    run = store.run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    if run.status == "queued":
        store.cancel_queued(run_id, f"{CANCELLED} before it started; Retry to run it")
        store.log(run_id, f"{CANCELLED} (it had not started)")
    elif run.status == "running":
        if run.host and run.host != socket.gethostname():
            raise JobError(f"run {run.name!r} runs on another machine ({run.host}); cancel it there")
        pid = run.pid
        step = (run.progress or {}).get("step")
        # a run on Ray: its pid is its driver's (which drives other runs too); the driver sees the
        # run cancelled and cancels its Ray task
        on_ray = (run.progress or {}).get("executor") == "ray"
        if pid and pid != os.getpid() and pid_alive(pid) and not on_ray:
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + wait
            while time.time() < deadline:
                cur = store.run(run_id)
                if cur is None or cur.status != "running":
                    break
                time.sleep(0.2)
            else:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        where = f" at step {step}" if step else ""
        store.mark_cancelled(run_id, f"{CANCELLED}{where}; Retry resumes from the last checkpoint")
        store.log(run_id, f"{CANCELLED}{where}")
    else:
        raise JobError(f"run {run.name!r} is {run.status}; only queued or running runs can be cancelled")
    out = store.run(run_id)
    assert out is not None
    return out


def retry(store: Store, run_id: int, force: bool = False) -> Run:
    """Queue a finished run again.

    interrupted: resumes from its last checkpoint. failed / diverged: starts afresh (the
    checkpoints led to the failure). done: never (a retry must not delete finished results;
    `force` is accepted for failed/diverged runs only and changes nothing).
    """
    run = store.run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    if run.status == "interrupted":
        requeue(store, run_id, "retry requested: queued again, resumes from the last checkpoint")
    elif run.status in ("failed", "diverged"):
        requeue(store, run_id, f"retry requested ({run.status}): queued again from the start", clear=True)
    elif run.status == "done":
        raise JobError(f"run {run.name!r} is done and its results are kept; a retry never deletes them. To train it "
                       f"again, run its experiment with --force --methods {run.name}")
    else:
        raise JobError(f"run {run.name!r} is {run.status}; only failed, diverged or interrupted runs can be retried")
    out = store.run(run_id)
    assert out is not None
    return out


def run_node(run: Run) -> str | None:
    """Where a run runs (or ran): its Ray node (`--executor ray`), else the host of its process."""
    return ((run.progress or {}).get("node") or ((run.info or {}).get("executor") or {}).get("node")
            or run.host)


def run_summary(run: Run) -> dict[str, Any]:
    """The JSON shape of a run in the jobs list."""
    return {
        "id": run.id,
        "experiment": run.experiment,
        "name": run.name,
        "method": run.method,
        "status": run.status,
        "progress": run.progress or {},
        "error": run.error,
        "diverged_step": run.diverged_step,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "heartbeat": run.heartbeat,
        "node": run_node(run),
        "metrics": run.metrics,
        "cost": run.cost,
    }
