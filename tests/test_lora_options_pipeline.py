"""LoRA's data-driven and base-rewriting initialisations and LoRA+ through the whole pipeline: the
recipe hands EVA/CorDA their training batches, LoRA+ gets its optimizer, and an adapter whose
init rewrote the base (PiSSA with fast SVD, CorDA) is saved so that a plain reload on the original
base reproduces the run's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import STORIES, needs_shared, write_experiment
from test_matrix import _estimated_trainable, _experiment, _test_examples

from peftlab.models.trained import load_trained
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


@pytest.mark.parametrize("options", [{"init": "eva"}, {"init": "corda"}, {"init": "pissa_niter_4"},
                                     {"loraplus_lr_ratio": 16}, {"trainable_tokens": ["eos"]}],
                         ids=["eva", "corda", "pissa_niter", "loraplus", "trainable_tokens"])
def test_lora_option_trains_saves_and_reloads(tmp_path: Path, options: dict) -> None:
    body = _experiment("causal-lm", STORIES, "lora")
    body["methods"] = [{"name": "lora", "options": options}]
    p = plan(write_experiment(tmp_path, body))
    [run] = run_experiment(p, Store(tmp_path / "store"), isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    if options.get("init") != "eva":  # EVA redistributes ranks by the data it reads: known only once it ran
        assert _estimated_trainable(p) == run.cost["trainable_params"]  # counted on an empty model, before the run
    preds = [json.loads(x)["output"] for x in run.file("predictions").read_text(encoding="utf-8").splitlines()]
    trained = load_trained(run)
    again = trained.task.predict(trained.model, _test_examples(p, trained), desc="reload")
    assert [x.output for x in again] == preds


def test_trainable_end_token_teaches_a_base_that_never_ends_to_stop(tmp_path: Path) -> None:
    """stories260k was pretrained without end tokens (its P(EOS) after a finished text is ~0), so
    LoRA alone does not learn to stop in a short run; training the end token's embedding row
    beside it (tied: its output row too) does. The same run, the same steps, with and without."""
    from conftest import DATA

    e2e = DATA / "e2e_nlg"
    body = {"name": "stop", "model": str(STORIES), "task": "causal-lm",
            "data": {"train": str(e2e / "train.jsonl"), "validation": str(e2e / "validation.jsonl"),
                     "test": str(e2e / "test.jsonl"), "prompt": "{mr}\nDescription:", "target": "ref",
                     "max_train_examples": 960, "max_validation_examples": 8, "max_test_examples": 16},
            "methods": [{"name": "lora", "r": 32, "alpha": 64, "learning_rate": 0.003},
                        {"name": "lora", "label": "lora-eos", "r": 32, "alpha": 64, "learning_rate": 0.003,
                         "trainable_tokens": ["eos"]}],
            "training": {"epochs": 1, "batch_size": 16, "max_source_length": 144, "max_target_length": 176,
                         "precision": "fp32", "threads": 1},  # one core: the suite runs two workers
            "evaluation": {"max_new_tokens": 80, "batch_size": 16}}
    runs = run_experiment(plan(write_experiment(tmp_path, body)), Store(tmp_path / "store"), isolation="inprocess",
                          echo=lambda *_: None)
    assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
    stopped = {}
    for r in runs:
        rows = [json.loads(x) for x in r.file("predictions").read_text(encoding="utf-8").splitlines()]
        stopped[r.name] = sum(1 for x in rows if x["stopped"])
    print(f"\noutputs that stopped, of 16: {stopped}")
    plain, eos = runs
    assert eos.cost["trainable_params"] == plain.cost["trainable_params"] + 64  # one row of the 64-wide table
    assert stopped["lora"] <= 2 and stopped["lora-eos"] >= 12, stopped
