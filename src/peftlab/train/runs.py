"""Running one run of a plan: record it in the store (queued), claim it, execute it (in this
process, in a worker process, on an executor, or through the service's queue) and say how it
ended. What the experiment's orchestration (`train.runner`), the tuner (`tune.driver`) and the
race (`tune.race`) call for each run they make; none of them imports another to run one.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from peftlab.config import ExperimentConfig
from peftlab.config.schema import MethodEntry
from peftlab.scale.devices import worker_command
from peftlab.store import Run, Store
from peftlab.train.launch import run_subprocess
from peftlab.train.plan import Plan, config_hash

if TYPE_CHECKING:
    from peftlab.scale.ray_executor import Executor


def queue_run(p: Plan, store: Store, entry: MethodEntry, force: bool = False,
              cfg: ExperimentConfig | None = None, extra: dict[str, Any] | None = None) -> tuple[Run, bool]:
    """Record one run of the experiment (queued unless already done with this config).

    `cfg`: the experiment as this run trains it (a seed's, a trial's budget; default the plan's);
    `extra`: what the run is within the experiment (`role`, `variant`, `seed`, `data_seed`,
    `trial`), kept in its config. Returns (run, reset). A reset run (new, changed config, or
    `force`) loses the checkpoints of its earlier config, so it can never resume from a
    different configuration's state."""
    cfg = cfg or p.cfg
    run_cfg = {
        "experiment": cfg.model_dump(mode="json"),
        "entry": entry.model_dump(mode="json"),
        "base_dir": str(p.base_dir) if p.base_dir else None,
        **(extra or {}),
    }
    run, reset = store.upsert_run(cfg.name, entry.run_name, entry.name, config_hash(cfg, entry), run_cfg, force)
    if reset:
        shutil.rmtree(store.run_dir(cfg.name, entry.run_name) / "checkpoints", ignore_errors=True)
    return run, reset


def run_one(p: Plan, store: Store, entry: MethodEntry, head: str, force: bool, isolation: str | Executor,
            echo: Any, cfg: ExperimentConfig | None = None, extra: dict[str, Any] | None = None) -> Run:
    if isolation == "queue":
        return through_queue(p, store, [((entry, cfg or p.cfg, extra or {}), head)], force, echo)[0]
    run, claimed = claim(p, store, entry, head, force, echo, cfg, extra)
    if not claimed:
        return run
    return ended(store, run.id, head, _execute(store, run.id, isolation), echo)


def through_queue(p: Plan, store: Store, jobs: list[tuple[tuple[MethodEntry, ExperimentConfig, dict[str, Any]], str]],
                   force: bool, echo: Any) -> list[Run]:
    """Queue the runs for the scheduler (never claimed here: its worker slots count every
    training) and wait for them to end."""
    from peftlab.queue.handoff import wait_for

    runs: list[tuple[Run, str]] = []
    for (entry, cfg, extra), head in jobs:
        run, _ = queue_run(p, store, entry, force, cfg, extra)
        if run.status in ("done", "diverged"):
            echo(f"{head}: already {run.status}, skipped (use --force to redo)")
        else:
            echo(f"{head}: queued for the service's worker")
        runs.append((run, head))
    statuses = wait_for(store, [r.id for r, _ in runs if r.status not in ("done", "diverged")])
    return [ended(store, r.id, h, statuses[r.id], echo) if r.id in statuses else r for r, h in runs]


def claim(p: Plan, store: Store, entry: MethodEntry, head: str, force: bool, echo: Any,
           cfg: ExperimentConfig | None, extra: dict[str, Any] | None) -> tuple[Run, bool]:
    """Queue the run and claim it for this process: (run, claimed). Not claimed: done already, or
    another process is on it (said with `echo`)."""
    run, _ = queue_run(p, store, entry, force, cfg, extra)
    if run.status in ("done", "diverged"):
        echo(f"{head}: already {run.status}, skipped (use --force to redo)")
        return run, False
    if not store.claim(run.id):
        current = store.run(run.id) or run
        if current.status == "running":
            echo(f"{head}: being run by another process (pid {current.pid} on {current.host}), skipped")
        else:
            echo(f"{head}: {current.status} by another process meanwhile, skipped")
        return current, False
    from peftlab.train.trainer import last_checkpoint

    ckpt = last_checkpoint(store.run_dir(p.cfg.name, entry.run_name) / "checkpoints")
    echo(f"{head}: running" + (f" (resuming from {ckpt.name})" if ckpt else ""))
    return run, True


def ended(store: Store, run_id: int, head: str, status: str, echo: Any) -> Run:
    """Say how a run ended, with its warnings; the run as the store has it now."""
    final = store.run(run_id)
    assert final is not None
    echo(f"{head}: {status}" + (f" - {final.error}" if final.error and status != "done" else ""))
    data = (final.info or {}).get("data") or {}
    if data.get("truncated_train_rows"):
        echo(f"{head}: warning: {data['truncated_train_rows']} of {data.get('train')} training rows were longer "
             f"than the max lengths and were truncated (set data.on_long_rows: error to refuse them)")
    if data.get("skipped_rows"):
        echo(f"{head}: warning: {data['skipped_rows']} bad rows were skipped; `peftlab show` lists them")
    return final


def _execute(store: Store, run_id: int, isolation: str | Executor) -> str:
    """Execute one claimed run: in this process, in a worker process (launched once per device for
    a run over several devices), or on an executor (`--executor ray`). Returns its status."""
    if not isinstance(isolation, str):
        return isolation.run(store, run_id)
    if isolation == "inprocess":
        from peftlab.train.recipe import execute_run

        return execute_run(store, run_id)
    run = store.run(run_id)
    devices = int(((run.config if run else {}).get("experiment") or {}).get("training", {}).get("devices", 1))
    return run_subprocess(store, run_id, worker_command(store.root, run_id, devices))
