"""What `peftlab run --tune N --seeds K` would do, before it does it: the runs it makes and the
time they are expected to take (`train.estimate`, from the throughput already measured in the
store where it has finished runs)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from peftlab.store import Store


def plan_cost(p: Any, store: Store) -> dict[str, Any]:
    """Per method: trials, final runs and their expected seconds; totals."""
    import torch

    from peftlab.methods import get_method
    from peftlab.tasks.build import load_task
    from peftlab.train.estimate import estimate
    from peftlab.train.runner import preflight
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
                                                eval_examples=len(data.validation))["methods"]}
    finals = final_runs(p, list(cfg.methods))
    rows = []
    for e in cfg.methods:
        trains = get_method(e.name).trains
        n_trials = cfg.tuning.trials if cfg.tuning is not None and trains else 0
        n_final = sum(1 for fe, _, x in finals if x.get("variant", fe.run_name) == e.run_name)
        per_trial = (trial.get(e.run_name) or {}).get("seconds") or 0.0
        per_final = (final.get(e.run_name) or {}).get("seconds") or 0.0
        rows.append({"run": e.run_name, "trials": n_trials, "final_runs": n_final, "seconds_per_trial": per_trial,
                     "seconds_per_final_run": per_final, "seconds": n_trials * per_trial + n_final * per_final,
                     "trainable_params": (final.get(e.run_name) or {}).get("trainable_params"),
                     "memory_mb": (final.get(e.run_name) or {}).get("memory_mb")})
    return {"rows": rows, "runs": sum(r["trials"] + r["final_runs"] for r in rows),
            "seconds": sum(r["seconds"] for r in rows)}


def describe_plan(p: Any, store: Store) -> str:
    from tabulate import tabulate

    cost = plan_cost(p, store)
    table = [[r["run"], r["trials"], r["final_runs"], f"{r['seconds_per_trial']:,.0f}" if r["trials"] else "-",
              f"{r['seconds_per_final_run']:,.0f}", f"{r['seconds'] / 60:,.1f}",
              "-" if r["trainable_params"] is None else f"{r['trainable_params']:,}",
              "-" if r["memory_mb"] is None else f"{r['memory_mb']:,}"] for r in cost["rows"]]
    head = ["run", "trials", "final runs", "s/trial", "s/final run", "total min", "trainable", "memory MB"]
    return (tabulate(table, headers=head, tablefmt="simple", disable_numparse=True)
            + f"\n{cost['runs']} runs, about {cost['seconds'] / 60:,.1f} min one after another (estimate; nothing ran)")
