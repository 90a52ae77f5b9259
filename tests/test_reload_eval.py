"""A finished run loaded back for inference scores like its own test evaluation did, for every
task, AdaLoRA included (its forward used to need a trainable adapter as soon as labels were
passed: `peftlab evaluate` and the endpoint's loss passes crashed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import MINILM, STORIES, needs_shared, write_experiment
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


def test_classification_scores_loss_and_predictions_in_one_pass(tmp_path: Path, tiny_bert: Path) -> None:
    """The one pass gives the loss a separate loss pass gives and `predict`'s own predictions."""
    from peftlab.tasks.base import Task

    p = plan(write_experiment(tmp_path, _experiment("classification", tiny_bert, "lora")))
    [run] = run_experiment(p, Store(tmp_path / "store"), isolation="inprocess", echo=lambda *_: None)
    trained = load_trained(run)
    examples = _test_examples(p, trained)
    loss, preds = trained.task.evaluate(trained.model, examples)
    two_pass_loss, two_pass_preds = Task.evaluate(trained.task, trained.model, examples)  # loss pass, then predict
    assert math.isclose(loss, two_pass_loss, rel_tol=1e-5, abs_tol=1e-6), (loss, two_pass_loss)
    assert preds == two_pass_preds and preds == trained.task.predict(trained.model, examples)


@pytest.mark.parametrize(("task", "model"), [("classification", "bert"), ("causal-lm", "stories")])
def test_validation_during_training_is_the_task_s_one_pass(tmp_path: Path, request: pytest.FixtureRequest,
                                                          monkeypatch: pytest.MonkeyPatch, task: str, model: str) -> None:
    """No evaluation loop of the Trainer's beside the task's pass: the validation loss and the
    main metric come from the same pass, at the same steps."""
    from transformers import Trainer

    def no_loop(*_a: object, **_k: object) -> None:
        raise AssertionError("the Trainer's own evaluation loop ran beside the task's validation pass")

    monkeypatch.setattr(Trainer, "evaluation_loop", no_loop)
    path = STORIES if model == "stories" else request.getfixturevalue(f"tiny_{model}")
    body = _experiment(task, path, "lora")
    body["training"]["eval_every"] = 4
    store = Store(tmp_path / "store")
    [run] = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    curves = store.curves(run.id)
    main = "val_macro_f1" if task == "classification" else "val_rougeL"
    assert [s for s, _ in curves["eval_loss"]] == [s for s, _ in curves[main]] == [4, 8, 12]
    assert all(math.isfinite(v) and v > 0 for _, v in curves["eval_loss"])


def test_validating_while_training_does_not_change_what_is_trained(tmp_path: Path) -> None:
    """The validation passes draw no random numbers: a run validated every 4 steps trains the
    same weights as one never validated (the Trainer's own loop seeded its data loader from the
    global generator, which moved every later dropout mask: MiniLM trains with dropout 0.1)."""
    outs = []
    for every in (None, 4):
        body = _experiment("classification", MINILM, "lora")
        body["name"] = f"v{every}"
        if every:
            body["training"]["eval_every"] = every
        [run] = run_experiment(plan(write_experiment(tmp_path, body)), Store(tmp_path / "store"),
                               isolation="inprocess", echo=lambda *_: None)
        assert run.status == "done", run.error
        outs.append(run)
    a, b = outs
    assert Store(tmp_path / "store").curves(b.id).get("eval_loss"), "the second run did validate"
    assert a.metrics["eval_loss"] == b.metrics["eval_loss"] and a.metrics["accuracy"] == b.metrics["accuracy"]
