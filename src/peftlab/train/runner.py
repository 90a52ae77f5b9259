"""Run an experiment: validate everything up front, then run each method in turn.

Methods already done with the same configuration are skipped (unless `force`); a run that
was interrupted resumes from its last checkpoint; a run another process is working on is
left alone.

Every run is checked first (`preflight.py`: data, model and every method on an empty copy of
the model), so a bad file or a method that cannot apply fails in seconds, before anything in the
store changes.

The order of the work goes here (checks, the tuning or the race, then the final runs, one after
another or side by side); the plan it follows in `plan.py`; one run's recording, claiming and
execution in `runs.py`; what happens inside one run in `recipe.py`; tuning, racing and seeds in
`peftlab.tune`. The dependencies go one way: this module uses the tuner and the runs, which use
the plan; nothing imports this module back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from peftlab.config import ExperimentConfig
from peftlab.config.schema import MethodEntry
from peftlab.errors import ConfigError
from peftlab.scale.devices import check_devices, local_devices
from peftlab.store import Run, Store
from peftlab.train.launch import sigterm_as_interrupt
from peftlab.train.plan import Plan, config_hash, plan, select_methods  # noqa: F401 - public here too
from peftlab.train.preflight import Preflight, apply_to_empty_model, preflight  # noqa: F401 - public here too
from peftlab.train.runs import claim, ended, queue_run, run_one, through_queue  # noqa: F401 - public here too

if TYPE_CHECKING:
    from peftlab.scale.ray_executor import Executor


def check_replacement(p: Plan, store: Store, runs: list[tuple[MethodEntry, ExperimentConfig]]) -> None:
    """Refuse to replace finished results without being asked: a run of the same name that is done
    (or diverged) with another configuration would be reset, which deletes its metrics, curves and
    logs. That happens when the experiment file changed, or when another file uses the same
    `name:`. `--force` (redo) or `--replace` say it is meant."""
    taken = []
    for entry, cfg in runs:
        old = store.find_run(cfg.name, entry.run_name)
        if old is not None and old.status in ("done", "diverged") and old.config_hash != config_hash(cfg, entry):
            taken.append(old.name)
    if taken:
        exp = store.experiment(p.cfg.name) or {}
        src = f" (last run from {exp['base_dir']})" if exp.get("base_dir") else ""
        raise ConfigError(
            f"{p.where('name')}: experiment {p.cfg.name!r} already has finished runs with other settings{src}: "
            f"{', '.join(taken)}. Running this file would replace their results. Give this experiment its own "
            f"`name:`, or pass --replace (or --force) to replace them")


def run_experiment(
    p: Plan,
    store: Store,
    force: bool = False,
    isolation: str | Executor = "subprocess",
    echo: Any = print,
    replace: bool = False,
) -> list[Run]:
    """Run every run of the experiment. `isolation`: "subprocess" (a worker process each, one after
    another), "inprocess", "queue" (queued for a scheduler, which runs them in its worker slots:
    the web service's tuning driver, `queue.handoff`; "subprocess" means this when the service
    started this process), or an executor (`scale.ray_executor`), which runs the final runs side
    by side as its resources allow (tuning trials go through it one at a time, as the tuner asks)."""
    from peftlab.queue.handoff import service_pid

    started = time.time()  # a race's budget counts from here: the checks take their share
    cfg = p.cfg
    if isolation == "subprocess" and service_pid() is not None:
        isolation = "queue"
    from peftlab.tune.plan import check_tuned_data, check_tuning, final_runs, save_plan

    check_tuning(p)
    checked = preflight(p, read_test=cfg.tuning is None)  # a tuning phase first: it never reads the test split
    check_tuned_data(p, checked.data)
    cfg = p.cfg  # (`--methods all` leaves out, in preflight, the methods that do not fit the model)
    if isinstance(isolation, str):
        check_devices(p, *local_devices())
    else:  # the cluster's largest node, and each run's resources
        isolation.check(p, checked)
    if not (force or replace) and cfg.tuning is None:
        check_replacement(p, store, [(e, c) for e, c, _ in final_runs(p, list(cfg.methods))])
    for note in checked.notes:
        echo(f"note: {note}")
    for note in checked.warnings:
        echo(f"warning: {note}")
    with sigterm_as_interrupt():
        store.save_experiment(cfg.name, cfg.task, cfg.model.path, cfg.model_dump(mode="json"), p.yaml_text,
                              str(p.base_dir) if p.base_dir else None)
        store.reap_stale()
        save_plan(store.root, p)  # what "n of N runs done" counts
        entries = list(cfg.methods)
        racing = cfg.tuning is not None and cfg.tuning.budget is not None
        if racing and isolation == "subprocess" and cfg.training.devices == 1:
            # a race's many short runs run in this process: a worker's start (about 10 s here,
            # mostly importing torch and transformers) would take much of each first-rung run
            isolation = "inprocess"
        if racing:  # within a budget: the race's finalists, and the runs that train nothing
            from peftlab.train.preflight import _task
            from peftlab.tune.race import race

            tuned = race(p, store, checked, _task(cfg, checked.model, checked.data), force, isolation, echo, started)
            entries = [tuned.get(e.run_name, e) for e in entries
                       if e.run_name in tuned or not p.method(e).trains]
        elif cfg.tuning is not None:
            from peftlab.tune.driver import tune

            tuned = tune(p, store, checked.data, force, isolation, echo)
            entries = [tuned.get(e.run_name, e) for e in entries]
        finals_started = time.time()
        if cfg.tuning is not None:
            preflight(p)  # the final runs read the test split: check it now
        results = _final_runs(p, store, final_runs(p, entries), force, isolation, echo)
        if racing:
            from peftlab.tune.race_state import finish

            finish(store.root, cfg.name, finals_started)
        return results


def _final_runs(p: Plan, store: Store, finals: list[tuple[MethodEntry, ExperimentConfig, dict[str, Any]]],
                force: bool, isolation: str | Executor, echo: Any) -> list[Run]:
    heads = [f"[{i}/{len(finals)}] {p.cfg.name} / {e.run_name}" for i, (e, _, _) in enumerate(finals, start=1)]
    jobs = list(zip(finals, heads, strict=True))
    if isolation == "queue":  # the scheduler runs them as its slots allow
        return through_queue(p, store, jobs, force, echo)
    if isinstance(isolation, str):  # one after another
        return [run_one(p, store, e, h, force, isolation, echo, c, x) for (e, c, x), h in jobs]
    claimed = [(claim(p, store, e, h, force, echo, c, x), h) for (e, c, x), h in jobs]  # side by side
    statuses = isolation.run_all(store, [r.id for (r, ok), _ in claimed if ok], echo)
    return [ended(store, r.id, h, statuses[r.id], echo) if ok else r for (r, ok), h in claimed]
