"""Optuna studies kept in the store: one per method entry, with the same sampler, seed, pruner and
budget for every method of an experiment.

The studies live in `STORE/tuning.journal` (Optuna's journal storage: an append-only file with
file locks, safe for the driver and the trial processes together), so a killed study resumes
where it stopped: finished trials are kept, and a trial that was running when the driver died is
run again under its own number (its store run resumes from its checkpoint) instead of being
counted twice or lost. A study's name holds a hash of its space and budget: changing either
starts a new study rather than mixing incompatible trials.

The sampler is seeded per trial, from (`tuning.seed`, the trial's number): a sampler seeded once
would start its random stream over in every new process, so a study resumed after a kill asked
for trial 0's configuration again. Seeded per trial, a resumed study asks exactly what an
uninterrupted one asks, and never repeats a trial.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftlab.config.schema import TuningConfig
from peftlab.tune.space import Param

JOURNAL = "tuning.journal"


def storage(store_root: Path, echo: Callable[[str], Any] | None = None) -> Any:
    """The store's journal storage, checked first (`tune.journal`: a torn last record is moved
    aside, said with `echo`; damage elsewhere is a PeftlabError naming the file)."""
    import optuna

    from peftlab.tune.journal import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # peftlab prints each trial itself
    return open_storage(Path(store_root) / JOURNAL, echo)


def study_name(experiment: str, run_name: str, space: dict[str, Param], tuning: TuningConfig,
               trial_budget: dict[str, Any]) -> str:
    key = json.dumps({"space": [p.describe() for p in space.values()], "sampler": tuning.sampler,
                      "seed": tuning.seed, "pruner": tuning.pruner, "budget": trial_budget}, sort_keys=True)
    return f"{experiment}/{run_name}/{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number` of a study seeded `seed`."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{number}".encode()).digest()[:4], "little")


def trial_seeded(make: Callable[[int], Any], seed: int) -> Any:
    """A sampler that builds a fresh `make(seed)` sampler for each trial, seeded from (`seed`, the
    trial's number): what it asks depends on the trials told so far (in the journal) and on the
    number, never on how many trials this process asked before."""
    import optuna

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = make(seed)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.inner = make(trial_seed(seed, trial.number))
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            return self.inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:  # the seeds come from the trial numbers, not from a stream
            pass

    return TrialSeededSampler()


def open_study(store_root: Path, name: str, tuning: TuningConfig, maximize: bool,
               echo: Callable[[str], Any] | None = None) -> Any:
    import optuna

    kind = optuna.samplers.TPESampler if tuning.sampler == "tpe" else optuna.samplers.RandomSampler
    sampler = trial_seeded(lambda s: kind(seed=s), tuning.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if tuning.pruner == "median" else optuna.pruners.NopPruner()
    return optuna.create_study(study_name=name, storage=storage(store_root, echo), sampler=sampler, pruner=pruner,
                               direction="maximize" if maximize else "minimize", load_if_exists=True)


def pruning_hook(trial_info: dict[str, Any], store_root: Path) -> Any:
    """For a trial run in a worker: `hook(step, value) -> bool` reports the validation metric to the
    study and says whether the pruner stops the trial here. None when the study does not prune."""
    if trial_info.get("pruner", "none") == "none":
        return None
    import optuna

    study = optuna.load_study(study_name=trial_info["study"], storage=storage(store_root))
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial_info["number"])
    trial = optuna.trial.Trial(study, frozen._trial_id)

    def hook(step: int, value: float) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    return hook


def report_values(store_root: Path, trial_info: dict[str, Any], values: list[tuple[int, float]]) -> None:
    """Record the values a trial reported to its pruner elsewhere (a Ray worker, against a copy
    of the study) in the study here, so the pruner judges the trials after it by them."""
    import optuna

    study = optuna.load_study(study_name=trial_info["study"], storage=storage(store_root))
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial_info["number"])
    if frozen.state != optuna.trial.TrialState.RUNNING:
        return
    for step, value in values:
        if step not in frozen.intermediate_values:
            study._storage.set_trial_intermediate_value(frozen._trial_id, step, value)
