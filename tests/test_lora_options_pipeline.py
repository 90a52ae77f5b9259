"""LoRA's data-driven and base-rewriting initialisations and LoRA+ through the whole pipeline: the
recipe hands EVA/CorDA their training batches, LoRA+ gets its optimizer, and an adapter whose
init rewrote the base (PiSSA with fast SVD, CorDA) is saved so that a plain reload on the original
base reproduces the run's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import STORIES, needs_shared, write_experiment
from test_matrix import _experiment, _test_examples

from peftlab.models.trained import load_trained
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


@pytest.mark.parametrize("options", [{"init": "eva"}, {"init": "corda"}, {"init": "pissa_niter_4"},
                                     {"loraplus_lr_ratio": 16}], ids=["eva", "corda", "pissa_niter", "loraplus"])
def test_lora_option_trains_saves_and_reloads(tmp_path: Path, options: dict) -> None:
    body = _experiment("causal-lm", STORIES, "lora")
    body["methods"] = [{"name": "lora", "options": options}]
    p = plan(write_experiment(tmp_path, body))
    [run] = run_experiment(p, Store(tmp_path / "store"), isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    preds = [json.loads(x)["output"] for x in run.file("predictions").read_text(encoding="utf-8").splitlines()]
    trained = load_trained(run)
    again = trained.task.predict(trained.model, _test_examples(p, trained), desc="reload")
    assert [x.output for x in again] == preds
