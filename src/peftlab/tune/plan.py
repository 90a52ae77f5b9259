"""Which runs an experiment with `seeds:` and `tuning:` makes, and the checks on them that run
before anything starts.

- Final runs (the leaderboard rows): one per method entry, or with `seeds: [s1, s2, ...]` one
  per seed, named `<run>.s<seed>`. Every seed of an entry shares its data sampling and splits
  (`data_seed`: the experiment's own `training.seed`), so they differ only in their training
  seed and are tested on the same examples; the leaderboard groups them (`variant`).
- Tuning trials: `<run>.t<number>`, each a run with `role: trial` (see `tune.driver`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftlab.config.schema import ExperimentConfig, MethodEntry
from peftlab.errors import ConfigError
from peftlab.tune.space import space_for

if TYPE_CHECKING:
    from peftlab.train.plan import Plan

MIN_VALIDATION = 10  # examples: below this, trials' validation scores cannot rank them


def check_tuning(p: Plan) -> None:
    """Refuse a tuning or seeds setup that cannot work, naming the key and the fix, before any run."""
    cfg: ExperimentConfig = p.cfg
    if cfg.tuning is not None:
        if not p.trained():
            names = ", ".join(e.run_name for e in cfg.methods)
            raise ConfigError(f"{p.where('tuning')}: tuning: none of the methods ({names}) trains, so there is "
                              "nothing to tune; add a method that trains, or drop --tune / tuning")
        for e in cfg.methods:
            try:
                space_for(e, p.method(e), cfg.task)
            except ConfigError as err:
                raise ConfigError(f"{p.method_where(e.run_name)}: {err}") from None
        v = cfg.data.max_validation_examples
        if v is not None and v < MIN_VALIDATION:
            raise ConfigError(f"{p.where('data.max_validation_examples')}: data.max_validation_examples is {v}; "
                              f"tuning ranks trials on the validation split and needs at least {MIN_VALIDATION} "
                              "examples there: raise it, or give a larger validation file")
    elif any(e.search for e in cfg.methods):
        e = next(e for e in cfg.methods if e.search)
        raise ConfigError(f"{p.method_where(e.run_name)}: methods: {e.run_name}: `search` needs tuning (add a "
                          "`tuning:` section or pass --tune N)")


def check_tuned_data(p: Plan, data: Any) -> None:
    """The checks on the prepared data that the tuner makes (a validation split large enough to
    rank trials on), made where a launch is checked: `peftlab run` before anything is recorded,
    the service before it accepts a launch (422, instead of a driver that fails later)."""
    if p.cfg.tuning is not None:
        check_validation_size(len(data.validation), p.where("data.validation"))


def check_validation_size(n: int, where: str) -> None:
    if n < MIN_VALIDATION:
        raise ConfigError(f"{where}: the validation split has {n} examples; tuning ranks trials on it and needs at "
                          f"least {MIN_VALIDATION}: give a validation file, raise data.max_validation_examples, "
                          "or raise data.split_fractions' validation share")


def final_runs(p: Plan, entries: list[MethodEntry]) -> list[tuple[MethodEntry, ExperimentConfig, dict[str, Any]]]:
    """(entry, experiment as it trains, extra run config) of each final run."""
    cfg: ExperimentConfig = p.cfg
    tuned = cfg.tuning is not None
    out = []
    for e in entries:
        base: dict[str, Any] = {"variant": e.run_name} if (cfg.seeds or tuned) else {}
        if not cfg.seeds or not p.method(e).trains:  # a baseline trains nothing: one run
            out.append((e, cfg, base))
            continue
        for s in cfg.seeds:
            seeded = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": s})})
            entry = e.model_copy(update={"label": f"{e.run_name}.s{s}"})
            out.append((entry, seeded, {**base, "seed": s, "data_seed": cfg.training.seed}))
    return out


def planned_runs(p: Plan) -> list[str]:
    """The names of every run the experiment makes, in order: each trained method's trials
    (`<run>.t0` ... `<run>.t<trials-1>`, the numbers the tuner gives them) and the final runs
    (per seed). What "n of N runs done" counts: the plan, not the runs made so far."""
    cfg: ExperimentConfig = p.cfg
    names: list[str] = []
    if cfg.tuning is not None:
        for e in p.trained():
            names += [f"{e.run_name}.t{i}" for i in range(cfg.tuning.trials)]
    return names + [e.run_name for e, _, _ in final_runs(p, list(cfg.methods))]


def raced_runs(store_root: Path, p: Plan) -> list[str]:
    """A race's runs as far as they are known (its plan depends on how it goes): the rung runs it
    made or is making, and the final runs of its finalists and of the methods that train nothing.
    `tune.race` saves the plan again after each decision."""
    from peftlab.tune.race_state import load_state, rung_run_name

    cfg: ExperimentConfig = p.cfg
    state = load_state(store_root, cfg.name) or {}
    cands = {c["label"]: c for c in state.get("candidates", [])}
    names: list[str] = []
    alive = list(cands)
    for r, rung in enumerate(state.get("rungs", [])):
        names += [rung_run_name(cands[x], r) for x in alive]
        alive = rung["survivors"]
    fin = state.get("finalists")
    if fin is None and len(state.get("rungs", [])) < len((state.get("plan") or {}).get("steps", [])):
        r = len(state.get("rungs", []))
        names += [rung_run_name(cands[x], r) for x in alive]
    entries = [e for e in cfg.methods if not p.method(e).trains or e.run_name in (fin or {})]
    return names + [e.run_name for e, _, _ in final_runs(p, entries)]


def plan_file(store_root: Path, experiment: str) -> Path:
    return Path(store_root) / "launch" / f"{experiment}.plan.json"


def save_plan(store_root: Path, p: Plan) -> None:
    """Keep the experiment's plan (`planned_runs`) where the service reads it: written once per
    launch, by `peftlab run` and by the service's launch."""
    f = plan_file(store_root, p.cfg.name)
    f.parent.mkdir(parents=True, exist_ok=True)
    runs = raced_runs(store_root, p) if p.cfg.tuning is not None and p.cfg.tuning.budget else planned_runs(p)
    f.write_text(json.dumps({"runs": runs, "total": len(runs), "at": time.time()}), encoding="utf-8")


def load_plan(store_root: Path, experiment: str) -> dict[str, Any] | None:
    try:
        out = json.loads(plan_file(store_root, experiment).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) and isinstance(out.get("runs"), list) else None
