"""The jobs: every run in the store, its logs and curves, Cancel and Retry, and the worker.

Queue policy (what may be cancelled or retried, signals) is `peftlab.queue.jobs`; a refused
operation is a `JobError` (409)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from peftlab.queue import jobs
from peftlab.scale.progress import terminal_lines
from peftlab.serve import launch
from peftlab.serve.deps import SchedulerDep, StoreDep, find_experiment, find_run

router = APIRouter(tags=["jobs"])


@router.get("/api/worker")
def worker_status(scheduler: SchedulerDep, store: StoreDep) -> dict[str, Any]:
    """The scheduler's slots and runs; each experiment's last tuning driver (running or not, its
    log's tail and the error it ended with, whole: Jobs shows it before the driver made any run);
    each experiment's plan (the runs its launch makes: "n of N runs done" counts them)."""
    from peftlab.serve.launch import drivers
    from peftlab.tune.plan import load_plan

    plans = {e["name"]: load_plan(store.root, e["name"]) for e in store.experiments()}
    return {**scheduler.status(), "drivers": drivers(store), "plans": {k: v for k, v in plans.items() if v}}


@router.get("/api/runs")
def list_runs(store: StoreDep, experiment: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    rs = store.runs(experiment)
    if status:
        wanted = set(status.split(","))
        rs = [r for r in rs if r.status in wanted]
    return [jobs.run_summary(r) for r in rs]


@router.get("/api/runs/{run_id}")
def get_run(run_id: int, store: StoreDep) -> dict[str, Any]:
    r = find_run(store, run_id)
    return {**jobs.run_summary(r), "config": r.config, "resolved": r.resolved, "info": r.info}


@router.get("/api/runs/{run_id}/logs")
def run_logs(run_id: int, store: StoreDep, tail: int = Query(200, ge=1, le=5000)) -> dict[str, Any]:
    r = find_run(store, run_id)
    worker_log = store.run_dir(r.experiment, r.name) / "worker.log"
    lines: list[str] = []
    if worker_log.is_file():
        with open(worker_log, "rb") as f:
            f.seek(max(0, worker_log.stat().st_size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
        lines = [ln for ln in terminal_lines(text) if ln.strip()][-tail:]
    return {"run_id": run_id, "logs": store.logs(run_id)[-tail:], "worker_output": lines}


@router.get("/api/runs/{run_id}/curves")
def run_curves(run_id: int, store: StoreDep) -> dict[str, Any]:
    find_run(store, run_id)
    return {k: [[s, v] for s, v in pts] for k, pts in store.curves(run_id).items()}


@router.post("/api/runs/{run_id}/cancel")
def cancel(run_id: int, store: StoreDep) -> dict[str, Any]:
    find_run(store, run_id)
    return jobs.run_summary(jobs.cancel(store, run_id))


@router.post("/api/experiments/{name}/cancel")
def cancel_experiment(name: str, store: StoreDep) -> dict[str, Any]:
    """Cancel every queued or running run of the experiment (and stop its tuning driver)."""
    find_experiment(store, name)
    return {"experiment": name, "cancelled": launch.cancel_experiment_runs(store, name)}


@router.post("/api/experiments/{name}/cancel-and-delete")
def cancel_and_delete(name: str, store: StoreDep) -> dict[str, Any]:
    """Cancel the experiment's queued and running runs, then delete it as DELETE
    /api/experiments/{name} does (one store transaction: every row or none). A run that cannot
    be cancelled refuses the whole (409) before anything is deleted."""
    from peftlab.serve.routers.experiments import delete_experiment

    find_experiment(store, name)
    cancelled = launch.cancel_experiment_runs(store, name)
    return {**delete_experiment(name, store), "cancelled": cancelled}


@router.post("/api/runs/{run_id}/retry")
def retry(run_id: int, store: StoreDep, force: bool = False) -> dict[str, Any]:
    """Queue the run again. The previous attempt's step, loss and ETA are cleared: the next
    attempt reports its own (a resumed run continues its curves from its checkpoint)."""
    find_run(store, run_id)
    jobs.retry(store, run_id, force)
    run = store.run(run_id)
    if run is not None and run.status == "queued":  # not yet claimed: nothing of the new attempt to keep
        store.update(run_id, progress={})
    return jobs.run_summary(store.run(run_id) or run)


@router.delete("/api/runs/{run_id}")
def delete_run(run_id: int, store: StoreDep) -> dict[str, Any]:
    """Delete a run that is not running: its results, curves, logs and files."""
    from peftlab.store import ManageError

    find_run(store, run_id)
    try:
        return store.delete_run(run_id)
    except ManageError as e:
        raise HTTPException(409, str(e)) from None
