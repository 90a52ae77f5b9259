"""The playground answers what each run's own test evaluation answered (its predictions.jsonl),
for every kind of run, whatever order the runs are switched in.

A classification experiment on the real all-MiniLM-L6-v2 (a random tiny BERT gives every input the
same [CLS]) with zero-shot, lora, ia3, prefix-tuning and full fine-tuning, and a causal-lm one on
stories260k with zero-shot, lora, dora, ia3, prompt-tuning, prefix-tuning and full fine-tuning,
trained in-process. The bug this guards: switching from a non-LoRA adapter unloaded it with
peft's generic unload (HTTP 500: 'BertPooler' object has no attribute 'weight'), and the base
kept the last adapter's trained head, so zero-shot answered with it; zero-shot's newly
initialised head was also drawn from whatever the RNG held, not the run's seed.

The test evaluation ran with the adapter merged into the weights (`merged_for_inference`), the
playground unmerged: labels and greedy outputs must be equal, confidences within 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, MINILM, needs_shared, tiny_causal, write_experiment

from peftlab.infer.playground import Playground
from peftlab.infer.pool import ModelPool
from peftlab.store import Store

pytestmark = needs_shared
PHRASEBANK = DATA / "financial_phrasebank"
CAUSAL_RUNS = ["zero-shot", "lora", "dora", "ia3", "prompt-tuning", "prefix-tuning", "full"]
CLS_RUNS = ["zero-shot", "lora", "ia3", "prefix-tuning", "full"]


def _train(tmp: Path, body: dict[str, Any]) -> Path:
    from peftlab.train.runner import plan, run_experiment

    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done"] * len(runs), [(r.name, r.error) for r in runs]
    return tmp / "store"


@pytest.fixture(scope="module")
def cls_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    body = {"name": "cls", "model": str(MINILM), "task": "classification",
            "data": {"train": str(PHRASEBANK / "train.jsonl"), "validation": str(PHRASEBANK / "validation.jsonl"),
                     "test": str(PHRASEBANK / "test.jsonl"), "input": "text", "label": "label",
                     "max_train_examples": 32, "max_validation_examples": 8, "max_test_examples": 8},
            "methods": ["zero-shot", "lora", "ia3", {"name": "prefix-tuning", "num_virtual_tokens": 4}, "full"],
            "training": {"max_steps": 3, "batch_size": 8, "precision": "fp32", "threads": 1, "max_source_length": 64},
            "evaluation": {"batch_size": 8}}
    return _train(tmp_path_factory.mktemp("parity-cls"), body)


@pytest.fixture(scope="module")
def lm_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    body = tiny_causal(["zero-shot", "lora", "dora", "ia3", {"name": "prompt-tuning", "num_virtual_tokens": 4},
                        {"name": "prefix-tuning", "num_virtual_tokens": 4}, "full"], max_steps=4, threads=1)
    body["evaluation"]["max_new_tokens"] = 12
    return _train(tmp_path_factory.mktemp("parity-lm"), body)


def _expected(store: Store, experiment: str, n: int) -> dict[str, list[dict[str, Any]]]:
    """Each run's first `n` test predictions, as its evaluation wrote them."""
    out = {}
    for r in store.runs(experiment):
        with open(r.file("predictions"), encoding="utf-8") as f:
            out[r.name] = [json.loads(line) for line in f][:n]
    return out


def _inputs(store: Store, experiment: str) -> dict[str, dict[str, Any]]:
    """The test rows by their formatted input (a prediction records the prompt-template's output)."""
    from peftlab.models.trained import run_config

    cfg = run_config(store.runs(experiment)[0])[0]
    rows: dict[str, dict[str, Any]] = {}
    with open(cfg.data.test, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            rows[cfg.data.prompt.format_map(row) if cfg.data.prompt else row[cfg.data.input]] = row
    return rows


def _same(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert got["output"] == want["output"], where
    if "confidence" in want:
        assert abs(got["confidence"] - want["confidence"]) <= 1e-4, where


ORDERS = {"forward": lambda n: n, "reverse": lambda n: n[::-1], "interleaved": lambda n: n[::2] + n[1::2]}


@pytest.mark.parametrize("which", ["cls", "lm"])
def test_each_answer_is_the_runs_own_test_prediction_in_any_switching_order(
        which: str, cls_store: Path, lm_store: Path) -> None:
    root, experiment, names = (cls_store, "cls", CLS_RUNS) if which == "cls" else (lm_store, "tiny", CAUSAL_RUNS)
    store = Store(root)
    expected = _expected(store, experiment, 3)
    rows = _inputs(store, experiment)
    pg = Playground(store)
    for order_name, order in ORDERS.items():
        for k in range(3):
            for name in order(names):  # one run a request: the switches happen in this order
                want = expected[name][k]
                got = pg.generate(experiment, [name], inputs=rows[want["input"]])["outputs"][0]
                _same(got, want, f"{order_name} order, input {k}, run {name}")
    # all runs ticked at once, as the user did: every column its own run's answer
    for k in range(3):
        out = pg.generate(experiment, None, inputs=rows[expected[names[0]][k]["input"]])["outputs"]
        assert [o["run"] for o in out] == names
        for o in out:
            _same(o, expected[o["run"]][k], f"all runs, input {k}, run {o['run']}")
    st = pg.status()
    assert st["base_model_loads"] == 1 and st["full_model_loads"] == 1
    assert st["adapter_type_switches"] >= 3 * len(ORDERS)


def test_all_runs_ticked_over_http_answer_200(cls_store: Path) -> None:
    """The user's request: every run of the classification experiment, twice, in two orders."""
    from fastapi.testclient import TestClient

    from peftlab.serve.app import Settings, create_app

    expected = _expected(Store(cls_store), "cls", 1)
    text = expected["zero-shot"][0]["input"]
    app = create_app(Settings(store=str(cls_store), start_worker=False))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for runs in (CLS_RUNS, CLS_RUNS[::-1]):
            r = c.post("/api/playground", json={"experiment": "cls", "text": text, "runs": runs})
            assert r.status_code == 200, r.text
            for o in r.json()["outputs"]:
                _same(o, expected[o["run"]][0], o["run"])
        avail = {r["name"]: r["available"] for r in c.get("/api/playground/cls/runs").json()["runs"]}
        assert all(avail.values()), avail  # full fine-tuning included


def test_models_over_the_memory_limit_are_dropped_least_recently_used(lm_store: Path) -> None:
    store = Store(lm_store)
    expected = _expected(store, "tiny", 1)
    rows = _inputs(store, "tiny")
    pool = ModelPool(memory_mb=0.001)  # below one model: only the one in use stays
    pg = Playground(store, pool)
    for name in ("full", "lora", "full", "zero-shot"):
        want = expected[name][0]
        _same(pg.generate("tiny", [name], inputs=rows[want["input"]])["outputs"][0], want, name)
        assert pool.status()["models_loaded"] == 1
    st = pool.status()
    assert st["full_model_loads"] == 2 and st["base_model_loads"] == 2 and st["evictions"] == 3


def test_load_trained_zero_shot_classifier_is_the_runs_head(cls_store: Path) -> None:
    """`load_trained` (a run loaded as its test evaluation ran) draws a missing head from the run's seed."""
    from peftlab.infer.loading import example
    from peftlab.models.trained import load_trained

    store = Store(cls_store)
    want = _expected(store, "cls", 4)["zero-shot"]
    t = load_trained(store.find_run("cls", "zero-shot"))
    got = t.task.predict(t.model, [example(w["input"]) for w in want])
    for g, w in zip(got, want, strict=True):
        _same({"output": g.output, **g.extra}, w, w["input"])
