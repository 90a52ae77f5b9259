"""Equal-budget tuning of every method of an experiment, before its final runs.

For each method entry that trains, one Optuna study (`tune.study`) asks for `tuning.trials`
configurations from the entry's search space (`tune.space`). Every method gets the same: the
same number of trials, the same training budget per trial (`steps_per_trial` or
`max_train_examples_per_trial`), the same seeded sampler and the same pruner. Each trial is a
run in the store (`<run>.t<n>`, `role: trial`: status, curves, cost), executed like any other
run (a worker process, resumable), trained on the training split and scored on the
**validation** split's main metric; the test split is never read (`prepare_data(read_test=
False)`). The best configuration of each method then trains the final runs on the full budget,
with every seed, and only those read the test split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peftlab.config.schema import ExperimentConfig, MethodEntry
from peftlab.data.prepare import PreparedData
from peftlab.errors import PeftlabError
from peftlab.store import Store
from peftlab.tune.plan import check_validation_size
from peftlab.tune.space import apply_params, space_for
from peftlab.tune.study import open_study, study_name

if TYPE_CHECKING:
    from peftlab.train.plan import Plan


def trial_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The experiment as each trial trains it: the per-trial budget of `tuning`; with the median
    pruner, a validation every quarter of the trial when `eval_every` is not set."""
    t = cfg.tuning
    assert t is not None
    training, data = cfg.training, cfg.data
    if t.steps_per_trial:
        training = training.model_copy(update={"max_steps": t.steps_per_trial})
    if t.max_train_examples_per_trial:
        data = data.model_copy(update={"max_train_examples": t.max_train_examples_per_trial})
    if t.pruner != "none" and not training.eval_every:
        training = training.model_copy(update={"eval_every": max(1, (training.max_steps or 4) // 4)})
    return cfg.model_copy(update={"training": training, "data": data})


def budget(cfg: ExperimentConfig) -> dict[str, Any]:
    tcfg = trial_config(cfg)
    return {"max_steps": tcfg.training.max_steps, "epochs": tcfg.training.epochs,
            "max_train_examples": tcfg.data.max_train_examples, "eval_every": tcfg.training.eval_every}


def tune(p: Plan, store: Store, data: PreparedData, force: bool, isolation: str, echo: Any) -> dict[str, MethodEntry]:
    """Run (or resume) every method's study; the entries of the best configurations, by run name."""
    import optuna

    from peftlab.train.runs import run_one

    cfg: ExperimentConfig = p.cfg
    t = cfg.tuning
    assert t is not None
    check_validation_size(len(data.validation), p.where("data.validation"))
    main = p.task.main_metric
    tcfg = trial_config(cfg)
    trained = p.trained()
    best: dict[str, MethodEntry] = {}
    for mi, entry in enumerate(trained, start=1):
        space = space_for(entry, p.method(entry), cfg.task)
        dists = {k: prm.distribution() for k, prm in space.items()}
        name = study_name(cfg.name, entry.run_name, space, t, budget(cfg))
        study = open_study(store.root, name, t, p.task.higher_is_better, echo)
        echo(f"tuning [{mi}/{len(trained)}] {cfg.name} / {entry.run_name}: {t.trials} trials over "
             + "; ".join(prm.describe() for prm in space.values()))
        while True:
            trials = study.get_trials(deepcopy=False)
            finished = [x for x in trials if x.state.is_finished()]
            if len(finished) >= t.trials:
                break
            stale = [x for x in trials if x.state == optuna.trial.TrialState.RUNNING]
            if stale:  # the trial a killed driver left: run it again under its number (its run resumes)
                number, params = stale[0].number, stale[0].params
            else:
                trial = study.ask(dists)
                number, params = trial.number, trial.params
            label = f"{entry.run_name}.t{number}"
            extra = {"role": "trial", "variant": entry.run_name,
                     "trial": {"study": name, "number": number, "params": params, "pruner": t.pruner}}
            head = f"  trial {len(finished) + 1}/{t.trials} ({label}: {_show(params)})"
            run = run_one(p, store, apply_params(entry, params, label), head, force, isolation, echo, tcfg, extra)
            if run.status == "done" and isinstance((run.metrics or {}).get(main), int | float):
                value = float(run.metrics[main])
                if (run.info or {}).get("pruned"):
                    study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
                else:
                    study.tell(number, value, skip_if_finished=True)
                echo(f"{head}: validation {main} {value:.2f}")
            elif run.status in ("failed", "diverged", "done"):  # counted: every method gets the same trials
                study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            else:
                raise PeftlabError(f"trial {label} is {run.status}; run again to resume the study")
        complete = [x for x in study.get_trials(deepcopy=False) if x.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise PeftlabError(f"tuning {entry.run_name}: none of its {t.trials} trials finished with a validation "
                               f"{main}; see `peftlab show {cfg.name} {entry.run_name}.t0` for the first one's error")
        top = study.best_trial
        echo(f"tuning {entry.run_name}: best validation {main} {top.value:.2f} with {_show(top.params)} "
             f"(trial {top.number})")
        best[entry.run_name] = apply_params(entry, top.params, entry.run_name)
    return best


def _show(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
