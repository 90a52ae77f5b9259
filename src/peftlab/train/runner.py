"""Run an experiment: validate everything up front, then run each method in turn.

Methods already done with the same configuration are skipped (unless `force`); a run that
was interrupted resumes from its last checkpoint; a run another process is working on is
left alone.

Every run is checked first (`preflight.py`: data, model and every method on an empty copy of
the model), so a bad file or a method that cannot apply fails in seconds, before anything in the
store changes.

What runs, and in what order, goes here (skipping, resuming, replacing, isolation); the checks
before it in `preflight.py`; what happens inside one run in `recipe.py`; tuning and seeds in
`peftlab.tune`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftlab.config import ExperimentConfig, LoadedExperiment, load_experiment
from peftlab.config.load import line_index
from peftlab.config.schema import MethodEntry
from peftlab.errors import ConfigError, MethodNotApplicable
from peftlab.scale.devices import check_devices, local_devices, worker_command
from peftlab.store import Run, Store
from peftlab.train.launch import run_subprocess, sigterm_as_interrupt
from peftlab.train.preflight import Preflight, apply_to_empty_model, preflight  # noqa: F401 - public here too

if TYPE_CHECKING:
    from peftlab.scale.ray_executor import Executor


@dataclass
class Plan:
    """An experiment to run: its config (the selected methods), the folder its relative paths
    start from, its YAML text (kept with the experiment in the store) and where its keys are."""

    cfg: ExperimentConfig
    base_dir: Path | None
    yaml_text: str | None
    path: Path | None = None  # the experiment file, for messages
    loaded: LoadedExperiment | None = None  # the loader's result: the lines of the file's keys
    # `--methods all`: methods that do not fit this model are left out in preflight (with a note)
    # instead of failing the experiment
    every_method: bool = False

    def __post_init__(self) -> None:
        if self.loaded is None and self.yaml_text:  # built without the loader (the web API's experiments)
            source = str(self.path) if self.path else "experiment"
            self.loaded = LoadedExperiment(self.cfg, source, line_index(self.yaml_text), self.yaml_text)

    def where(self, key: str) -> str:
        """`file:line` of a key of the experiment file, for a message about it."""
        if self.path is None or self.loaded is None:
            return str(self.path or "experiment")
        return self.loaded.where(key)

    def method_where(self, run_name: str) -> str:
        """`file:line` of a `methods` entry, for a message about it."""
        return self.loaded.method_where(run_name) if self.loaded else str(self.path or "experiment")


def config_hash(cfg: ExperimentConfig, entry: MethodEntry) -> str:
    """What makes a run the same run: the experiment (less the other methods, and less tuning and
    seeds, which decide which runs exist, not what one run does) and its method entry (less its
    search space). A changed hash resets the run. Keys added since (data.format, data.as_chat,
    evaluation.precision, evaluation.forgetting...) count only when set off their defaults: the runs of existing stores keep their hashes."""
    body = cfg.model_dump(mode="json", exclude={"methods", "tuning", "seeds", "resources"})  # resources: where, not what
    for section, key, default in (("data", "format", "auto"), ("data", "as_chat", False),
                                  ("training", "devices", 1), ("training", "strategy", "auto"),
                                  ("evaluation", "precision", "fp32"), ("evaluation", "forgetting", True)):
        if body[section].get(key) == default:
            del body[section][key]
    blob = json.dumps({"experiment": body, "entry": entry.model_dump(mode="json", exclude={"search"})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def select_methods(cfg: ExperimentConfig, names: list[str] | None) -> list[MethodEntry]:
    """The entries `--methods` names: runs of the file, methods by name (with their defaults), or
    `all`: every method that applies to the task (the file's own entries first, as written)."""
    if not names:
        return list(cfg.methods)
    if names == ["all"]:
        from peftlab.methods import REGISTRY, validate_method

        out = list(cfg.methods)
        for name in REGISTRY:
            if any(m.name == name for m in out):
                continue
            try:
                validate_method(name, {}, cfg.task, cfg.evaluation.num_beams)
            except (ConfigError, MethodNotApplicable):
                continue
            out.append(MethodEntry(name=name))
        return out
    by_name = {m.run_name: m for m in cfg.methods}
    out: list[MethodEntry] = []
    for n in names:
        hits = [m for m in cfg.methods if m.run_name == n or m.name == n]
        if not hits:
            from peftlab.methods import REGISTRY

            if n in REGISTRY:  # a method not listed in the file: run it with its defaults
                hits = [MethodEntry(name=n)]
            else:
                raise ConfigError(
                    f"--methods: {n!r} is neither a run in this experiment ({', '.join(by_name)}) "
                    f"nor a known method ({', '.join(REGISTRY)})"
                )
        out += [h for h in hits if h not in out]
    return out


def plan(path: str | Path, overrides: dict[str, Any] | None = None, methods: list[str] | None = None,
         seeds: int | None = None, origins: dict[str, str] | None = None) -> Plan:
    """The experiment file, validated, with `overrides` (dotted keys; `origins`: the flag that gave
    each, for messages), only the `methods` named, and `seeds` (`--seeds K`: training.seed, +1, ...
    +K-1) in place of its `seeds:`."""
    path = Path(path)
    loaded = load_experiment(path, overrides, origins)
    selected = select_methods(loaded.cfg, methods)
    update: dict[str, Any] = {"methods": selected}
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds {seeds}: give the number of seeds to train each final run with, 1 or more")
        update["seeds"] = [loaded.cfg.training.seed + i for i in range(seeds)]
    cfg = loaded.cfg.model_copy(update=update)
    every = methods == ["all"]
    from peftlab.methods import validate_method

    for m in selected:
        validate_method(m.name, m.options, cfg.task, cfg.evaluation.num_beams)
    return Plan(cfg, path.parent.resolve(), loaded.text, path, loaded, every_method=every)


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
        if cfg.tuning is not None:
            from peftlab.tune.driver import tune

            tuned = tune(p, store, checked.data, force, isolation, echo)
            entries = [tuned.get(e.run_name, e) for e in entries]
            preflight(p)  # the final runs read the test split: check it now
        finals = final_runs(p, entries)
        heads = [f"[{i}/{len(finals)}] {cfg.name} / {e.run_name}" for i, (e, _, _) in enumerate(finals, start=1)]
        jobs = list(zip(finals, heads, strict=True))
        if isolation == "queue":  # the scheduler runs them as its slots allow
            return _through_queue(p, store, jobs, force, echo)
        if isinstance(isolation, str):  # one after another
            return [run_one(p, store, e, h, force, isolation, echo, c, x) for (e, c, x), h in jobs]
        claimed = [(_claim(p, store, e, h, force, echo, c, x), h) for (e, c, x), h in jobs]  # side by side
        statuses = isolation.run_all(store, [r.id for (r, ok), _ in claimed if ok], echo)
        return [_ended(store, r.id, h, statuses[r.id], echo) if ok else r for (r, ok), h in claimed]


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
        return _through_queue(p, store, [((entry, cfg or p.cfg, extra or {}), head)], force, echo)[0]
    run, claimed = _claim(p, store, entry, head, force, echo, cfg, extra)
    if not claimed:
        return run
    return _ended(store, run.id, head, _execute(store, run.id, isolation), echo)


def _through_queue(p: Plan, store: Store, jobs: list[tuple[tuple[MethodEntry, ExperimentConfig, dict[str, Any]], str]],
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
    return [_ended(store, r.id, h, statuses[r.id], echo) if r.id in statuses else r for r, h in runs]


def _claim(p: Plan, store: Store, entry: MethodEntry, head: str, force: bool, echo: Any,
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


def _ended(store: Store, run_id: int, head: str, status: str, echo: Any) -> Run:
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
