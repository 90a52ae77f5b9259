"""The report's baselines and cautions, from runs written by hand (no model): the majority-class
row of classification, predictions that collapse onto one class, zero-shot classification as an
untrained head, and the generation-health caution on every run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import DATA, needs_shared

from peftlab.report.board_text import render
from peftlab.report.collect import PALETTE, collect, method_color
from peftlab.report.leaderboard import MAJORITY, rows
from peftlab.report.recommend import recommend
from peftlab.store import Store

pytestmark = needs_shared
FPB = DATA / "financial_phrasebank"


def _config() -> dict:
    from peftlab.config import ExperimentConfig

    return ExperimentConfig.model_validate({
        "name": "cls", "model": "all-minilm-l6-v2", "task": "classification",
        "data": {"train": str(FPB / "train.jsonl"), "validation": str(FPB / "validation.jsonl"),
                 "test": str(FPB / "test.jsonl"), "input": "text", "label": "label",
                 "max_train_examples": 300, "max_test_examples": 120},
        "methods": ["zero-shot", "lora", "ia3"]}).model_dump(mode="json")


def _run(store: Store, name: str, method: str, preds: list[dict], labels: list[str]) -> None:
    from peftlab.evaluate.metrics import classification_metrics

    m = classification_metrics([p["pred_id"] for p in preds], [p["gold_id"] for p in preds], labels)
    m.pop("_per_class")
    run, _ = store.upsert_run("cls", name, method, name, {})
    d = store.run_dir("cls", name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
    store.finish(run.id, "done", metrics=m, cost={"trainable_params": 0 if method == "zero-shot" else 1000},
                 info={"predictions": f"runs/cls/{name}/predictions.jsonl", "labels": labels})


@pytest.fixture
def cls_store(tmp_path: Path) -> tuple[Store, list[str], list[int], int]:
    from peftlab.config import ExperimentConfig
    from peftlab.data.prepare import prepare_data

    store = Store(tmp_path / "s")
    cfg = _config()
    store.save_experiment("cls", "classification", "all-minilm-l6-v2", cfg, None, None)
    data = prepare_data(ExperimentConfig.model_validate(cfg).data, "classification", 42)
    labels = data.labels
    gold = [e.label for e in data.test]
    top = Counter(e.label for e in data.train).most_common(1)[0][0]
    # a good run, a run that always says one class (not the majority one), and zero-shot near chance
    _run(store, "lora", "lora", [{"input": str(i), "reference": labels[g], "output": labels[g], "gold_id": g,
                                  "pred_id": g if i % 5 else (g + 1) % 3} for i, g in enumerate(gold)], labels)
    one = (top + 1) % 3
    _run(store, "ia3", "ia3", [{"input": str(i), "reference": labels[g], "output": labels[one], "gold_id": g,
                                "pred_id": one} for i, g in enumerate(gold)], labels)
    _run(store, "zero-shot", "zero-shot", [{"input": str(i), "reference": labels[g], "output": labels[i % 3],
                                            "gold_id": g, "pred_id": i % 3} for i, g in enumerate(gold)], labels)
    return store, labels, gold, top


def test_majority_class_row_is_scored_on_the_same_test_examples(cls_store: tuple) -> None:
    store, labels, gold, top = cls_store
    rs = rows(store, "cls")
    maj = next(r for r in rs if r["run"] == MAJORITY)
    assert maj["baseline"] is True and maj["status"] == "baseline" and maj["rank"] is None
    assert maj["majority_label"] == labels[top]
    assert maj["accuracy"] == pytest.approx(100 * sum(g == top for g in gold) / len(gold))
    assert 0 < maj["macro_f1"] < 40 and maj["test_examples"] == len(gold)
    ranked = [r["run"] for r in rs if r["rank"] is not None]
    assert ranked[0] == "lora" and MAJORITY not in ranked and [r["rank"] for r in rs if r["rank"]] == [1, 2, 3]
    # placed by its score among the ranked runs, without a rank of its own
    at = [r["run"] for r in rs].index(MAJORITY)
    assert all(r["macro_f1"] >= maj["macro_f1"] for r in rs[:at])
    assert "majority-class" in render(rs) and "baseline" in render(rs)


def test_collapse_untrained_head_and_the_recommendation(cls_store: tuple) -> None:
    store, labels, _, top = cls_store
    rs = {r["run"]: r for r in rows(store, "cls")}
    assert "100% of test predictions are" in rs["ia3"]["collapsed"] and "collapsed" not in rs["lora"]
    data = collect(store, ["cls"])
    views = {v.label: v for v in data.runs}
    assert views["zero-shot"].untrained_head and not views["lora"].untrained_head
    assert views["ia3"].collapsed and data.baselines[0]["majority_label"] == labels[top]
    rec = recommend(data)
    text = rec.text
    assert "Passed over: ia3, its predictions collapse onto one class (100% of test predictions are" in text
    assert "zero-shot is an untrained classification head" in text and "chance level" in text
    assert f"The majority-class baseline (always {labels[top]!r}" in text
    why = dict((r["run"], w) for r, w in rec.passed_over)
    assert why["ia3"].startswith("its predictions collapse onto one class")
    assert why["zero-shot"].startswith("zero-shot classification is an untrained head")
    assert rec.run == "lora" and rs["lora"]["beats_floor"] is True and rs["lora"]["floor"] == MAJORITY
    from peftlab.report.html import ReportOptions
    from peftlab.report.html import render as page

    html = page(data, ReportOptions(bertscore=False))
    assert "⚠ one class" in html and "untrained head" in html and 'class="baseline"' in html


def test_one_colour_per_method_everywhere() -> None:
    assert method_color("lora") == method_color("lora") and method_color("lora") != method_color("ia3")
    assert method_color("lora") in PALETTE and method_color("no-such-method") in PALETTE


def test_every_flagged_run_is_named_in_the_recommendation(tmp_path: Path) -> None:
    store = Store(tmp_path / "g")
    store.save_experiment("g", "causal-lm", "m", {}, None, None)
    bad = {"healthy": False, "problems": ["100% of outputs never stopped (EOS not learned)"]}
    for name, method, score, health in (("lora", "lora", 30.0, {"healthy": True, "problems": []}),
                                        ("zero-shot", "zero-shot", 10.0, bad)):
        run, _ = store.upsert_run("g", name, method, name, {})
        store.finish(run.id, "done", metrics={"rougeL": score}, cost={"trainable_params": 5},
                     info={"health": health})
    text = recommend(collect(store, ["g"])).text
    assert "Generations flagged for zero-shot (100% of outputs never stopped" in text
