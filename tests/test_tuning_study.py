"""The tuning studies themselves, without training: an interrupted study resumes without
repeating a trial and asks what an uninterrupted one asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftlab.config.schema import TuningConfig
from peftlab.tune.space import Param
from peftlab.tune.study import open_study

SPACE = {"learning_rate": Param("learning_rate", low=1e-5, high=1e-2, log=True),
         "r": Param("r", choices=(4, 8, 16, 32))}


def _run(root: Path, tuning: TuningConfig, upto: int) -> list[dict]:
    """Ask and tell trials until the study has `upto`, in a new Study object (a new process's)."""
    root.mkdir(exist_ok=True)
    study = open_study(root, "exp/lora/abc", tuning, maximize=True)
    dists = {k: p.distribution() for k, p in SPACE.items()}
    while len(study.trials) < upto:
        trial = study.ask(dists)
        study.tell(trial.number, -abs(trial.params["learning_rate"] - 1e-3) + trial.params["r"] / 1e4)
    return [t.params for t in sorted(study.trials, key=lambda t: t.number)]


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_resumed_study_repeats_no_trial_and_asks_what_one_run_asks(tmp_path: Path, sampler: str) -> None:
    n = 12  # past TPE's 10 random start-up trials, so its model-based asks are resumed too
    tuning = TuningConfig(trials=n, sampler=sampler, seed=3)
    once = _run(tmp_path / "once", tuning, n)
    _run(tmp_path / "parts", tuning, 2)  # stopped after 2 trials
    _run(tmp_path / "parts", tuning, 11)  # restarted: a fresh sampler, as in a new process
    parts = _run(tmp_path / "parts", tuning, n)
    assert len(parts) == n
    lrs = [p["learning_rate"] for p in parts]
    assert len(set(lrs)) == n, f"a resumed study repeated a trial: {lrs}"
    assert parts == once  # deterministic: interruptions change nothing
    other = _run(tmp_path / "other", TuningConfig(trials=n, sampler=sampler, seed=4), n)
    assert [p["learning_rate"] for p in other] != lrs  # the seed still matters
