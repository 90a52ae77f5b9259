"""What `peftlab run --tune N --seeds K` would do, before it does it: the runs it makes and the
time they are expected to take (`train.estimate`, from the throughput already measured in the
store where it has finished runs)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from peftlab.store import Store

if TYPE_CHECKING:
    from peftlab.train.plan import Plan


def plan_cost(p: Plan, store: Store, force: bool = False) -> dict[str, Any]:
    """Per method: trials, final runs and their expected seconds; totals. A run the store already
    has done with this configuration is left out of the time (`peftlab run` skips it), unless
    `force` (it redoes every run)."""
    import torch

    from peftlab.tasks.build import load_task
    from peftlab.train.estimate import estimate
    from peftlab.train.preflight import preflight
    from peftlab.tune.driver import trial_config
    from peftlab.tune.plan import check_tuned_data, check_tuning, final_runs

    cfg = p.cfg
    check_tuning(p)
    checked = preflight(p, read_test=cfg.tuning is None)
    check_tuned_data(p, checked.data)
    data = checked.data
    if cfg.tuning is not None:  # the final runs are scored on the test split: count it (the tuning never reads it)
        from peftlab.data.prepare import prepare_data

        data = replace(data, test=prepare_data(cfg.data, cfg.task, cfg.training.seed, p.base_dir).test)
    task = load_task(cfg, checked.model, data.labels)
    cuda = torch.cuda.is_available()
    final = {r["name"]: r for r in estimate(cfg, checked.model, data, task, cuda=cuda, store=store)["methods"]}
    trial: dict[str, Any] = {}
    if cfg.tuning is not None:
        tp = trial_config(cfg)
        tdata = data
        if cfg.tuning.max_train_examples_per_trial:  # a trial's own training set (its steps follow from it)
            tdata = replace(data, train=data.train[:cfg.tuning.max_train_examples_per_trial])
        # a trial is scored on the validation split, not the test split
        trial = {r["name"]: r for r in estimate(tp, checked.model, tdata, task, cuda=cuda, store=store,
                                                eval_examples=len(data.validation), final=False)["methods"]}
    finals = final_runs(p, list(cfg.methods))
    made = {r.name: r for r in store.runs(cfg.name)}  # read once: what `peftlab run` would skip
    rows = []
    for e in cfg.methods:
        trains = p.method(e).trains
        n_trials = cfg.tuning.trials if cfg.tuning is not None and trains else 0
        mine = [fe for fe, _, x in finals if x.get("variant", fe.run_name) == e.run_name]
        t_done, f_done = (0, 0) if force else done_runs(p, store, made, e, n_trials)
        per_trial = (trial.get(e.run_name) or {}).get("seconds") or 0.0
        per_final = (final.get(e.run_name) or {}).get("seconds") or 0.0
        t_left, f_left = n_trials - t_done, len(mine) - f_done
        rows.append({"run": e.run_name, "trials": n_trials, "final_runs": len(mine), "trials_done": t_done,
                     "final_runs_done": f_done, "seconds_per_trial": per_trial, "seconds_per_final_run": per_final,
                     "seconds": t_left * per_trial + f_left * per_final,
                     "trainable_params": (final.get(e.run_name) or {}).get("trainable_params"),
                     "memory_mb": (final.get(e.run_name) or {}).get("memory_mb")})
    planned = sum(r["trials"] + r["final_runs"] for r in rows)
    done = sum(r["trials_done"] + r["final_runs_done"] for r in rows)
    return {"rows": rows, "runs": planned - done, "done": done, "planned": planned,
            "seconds": sum(r["seconds"] for r in rows)}


def done_runs(p: Plan, store: Store, made: dict[str, Any], entry: Any, n_trials: int) -> tuple[int, int]:
    """(trials, final runs) of one method the store already has finished with this configuration:
    the ones `peftlab run` skips. A trial counts once its study (named by the space, sampler and
    budget) has it finished; a tuned final run counts once the study is complete and the run is
    done with the configuration of the study's best trial (another best means a new final run)."""
    from peftlab.train.plan import config_hash
    from peftlab.tune.plan import final_runs

    cfg = p.cfg
    best = entry
    t_done = 0
    if n_trials:
        from peftlab.tune.driver import budget
        from peftlab.tune.space import apply_params, space_for
        from peftlab.tune.study import study_name

        name = study_name(cfg.name, entry.run_name, space_for(entry, p.method(entry), cfg.task), cfg.tuning, budget(cfg))
        trials = [r for r in made.values()
                  if ((r.config or {}).get("trial") or {}).get("study") == name and r.status in ("done", "failed", "diverged")]
        t_done = min(n_trials, len(trials))
        if t_done < n_trials:
            return t_done, 0
        params = _best_params(store, name)
        if params is None:
            return t_done, 0
        best = apply_params(entry, params, entry.run_name)
    f_done = 0
    for fe, fc, _ in final_runs(p, [best]):  # as `peftlab run` makes them from the tuned entry
        run = made.get(fe.run_name)
        if run is not None and run.status in ("done", "diverged") and run.config_hash == config_hash(fc, fe):
            f_done += 1
    return t_done, f_done


def _best_params(store: Store, study: str) -> dict[str, Any] | None:
    """The best trial's parameters of a finished study, read from the store's journal (None: no study)."""
    import optuna

    from peftlab.tune.study import JOURNAL, storage

    if not (store.root / JOURNAL).is_file():
        return None
    try:
        return dict(optuna.load_study(study_name=study, storage=storage(store.root)).best_trial.params)
    except (KeyError, ValueError):  # no such study, or no trial of it completed
        return None


def describe_plan(p: Plan, store: Store, force: bool = False) -> str:
    from tabulate import tabulate

    if p.cfg.tuning is not None and p.cfg.tuning.budget is not None:
        return describe_race(p, store)
    cost = plan_cost(p, store, force)
    table = [[r["run"], _count(r["trials"], r["trials_done"]), _count(r["final_runs"], r["final_runs_done"]),
              f"{r['seconds_per_trial']:,.0f}" if r["trials"] else "-",
              f"{r['seconds_per_final_run']:,.0f}", f"{r['seconds'] / 60:,.1f}",
              "-" if r["trainable_params"] is None else f"{r['trainable_params']:,}",
              "-" if r["memory_mb"] is None else f"{r['memory_mb']:,}"] for r in cost["rows"]]
    head = ["run", "trials", "final runs", "s/trial", "s/final run", "total min", "trainable", "memory MB"]
    return (tabulate(table, headers=head, tablefmt="simple", disable_numparse=True)
            + f"\n{cost['runs']} runs to make, about {cost['seconds'] / 60:,.1f} min one after another (estimate; nothing ran)"
            + (f"\n{cost['done']} of the {cost['planned']} planned runs are done in this store already and are skipped"
               " (--force redoes them)" if cost["done"] else ""))


def _count(planned: int, done: int) -> str:
    return f"{planned} ({done} done)" if done else str(planned)


def describe_race(p: Plan, store: Store) -> str:
    """The race `peftlab run --budget` would run: its rungs, the candidates each may carry, the
    finals, and the expected seconds of each (the test split is not read)."""
    from tabulate import tabulate

    from peftlab.errors import ConfigError
    from peftlab.train.preflight import _task, preflight
    from peftlab.tune import race_plan
    from peftlab.tune.plan import check_tuned_data, check_tuning
    from peftlab.tune.race import too_small

    check_tuning(p)
    checked = preflight(p, read_test=False)
    check_tuned_data(p, checked.data)
    setup = race_plan.Setup.of(p, store, checked, _task(p.cfg, checked.model, checked.data),
                               in_process=p.cfg.training.devices == 1)
    costs = setup.costs()
    plan = setup.plan(costs)
    if plan is None:
        raise ConfigError(too_small(setup, costs))
    names = [e.run_name for e in setup.trained]
    rows = [[f"rung {i + 1}", f"{n:,}", f"{c:,}", f"{sec / 60:,.1f}"]
            for i, (n, c, sec) in enumerate(zip(plan.steps, plan.caps, plan.per_rung, strict=True))]
    finals = race_plan.finals_seconds(costs, names, plan.finalists, plan.seeds)
    rows.append(["finals", "as trained", f"{plan.finalists} x {plan.seeds} seed{'s' if plan.seeds > 1 else ''}"
                 + (" + baselines" if costs.baselines else ""), f"{finals / 60:,.1f}"])
    table = tabulate(rows, headers=["stage", "steps", "runs (at most)", "expected min"], tablefmt="simple",
                     disable_numparse=True)
    per = tabulate([[m, f"{costs.rung(m, plan.steps[0]):,.0f}", f"{costs.final[m]:,.0f}"] for m in names],
                   headers=["method", "s per first-rung run", "s per final run"], tablefmt="simple",
                   disable_numparse=True)
    from peftlab.train.estimate import measured

    fresh = ("\nThis store has measured no run of this model: the race times its first run, then plans again "
             "from that measure (or stops there, saying the budget it needs).") if not measured(store, p.cfg).runs else ""
    return (f"race: {len(names)} method{'s' if len(names) != 1 else ''} x {plan.candidates} configuration{'s' if plan.candidates > 1 else ''} "
            f"within {plan.budget / 60:,.1f} min, on the validation split; after each rung the significantly worse "
            f"drop out and at most 1/{plan.eta} go on\n{table}\nexpected about {plan.expected / 60:,.1f} min of "
            f"the {plan.budget / 60:,.1f} (estimate; nothing ran; more go on where the budget allows){fresh}\n\n{per}")
