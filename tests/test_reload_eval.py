"""A finished run loaded back for inference scores like its own test evaluation did, for every
task, AdaLoRA included (its forward used to need a trainable adapter as soon as labels were
passed: `peftlab evaluate` and the endpoint's loss passes crashed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import STORIES, needs_shared, write_experiment
from test_matrix import _experiment, _test_examples

from peftlab.models.trained import load_trained
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


@pytest.mark.parametrize(("task", "model", "method"), [("classification", "bert", "adalora"),
                                                       ("seq2seq", "t5", "adalora"),
                                                       ("causal-lm", "stories", "adalora"),
                                                       ("classification", "bert", "lora")])
def test_reloaded_run_scores_its_test_split_again(tmp_path: Path, request: pytest.FixtureRequest, task: str,
                                                  model: str, method: str) -> None:
    path = STORIES if model == "stories" else request.getfixturevalue(f"tiny_{model}")
    p = plan(write_experiment(tmp_path, _experiment(task, path, method)))
    [run] = run_experiment(p, Store(tmp_path / "store"), isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    trained = load_trained(run)
    loss, preds = trained.task.evaluate(trained.model, _test_examples(p, trained))
    assert math.isclose(loss, run.metrics["eval_loss"], rel_tol=1e-4, abs_tol=1e-5), (loss, run.metrics["eval_loss"])
    assert len(preds) == 6
