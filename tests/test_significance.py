"""Leaderboard statistics from stored predictions: intervals, paired tests against the best row,
rank groups, and variants with several seeds. Runs are written by hand (no model)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from peftlab.report.board_text import render
from peftlab.report.leaderboard import rows
from peftlab.store import Store

REFS = [f"the title of table {i} is about {w}" for i, w in enumerate(["sales", "rain", "cars", "jobs"] * 15)]


def _run(store: Store, exp: str, name: str, preds: list[dict], metrics: dict, variant: str | None = None,
         labels: list[str] | None = None) -> None:
    cfg = {"variant": variant} if variant else {}
    run, _ = store.upsert_run(exp, name, "lora", name, cfg)
    d = store.run_dir(exp, name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
    store.finish(run.id, "done", metrics=metrics, cost={"trainable_params": 10},
                 info={"predictions": f"runs/{exp}/{name}/predictions.jsonl", "labels": labels})


def _gen(quality: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"input": f"table {i}", "reference": ref,
             "output": ref if rng.random() < quality else "something else entirely"} for i, ref in enumerate(REFS)]


def _rougeL(preds: list[dict]) -> float:
    from peftlab.evaluate.metrics import generation_metrics

    return generation_metrics([p["output"] for p in preds], [[p["reference"]] for p in preds])["rougeL"]


@pytest.fixture
def gen_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s")
    store.save_experiment("g", "causal-lm", "m", {}, None, None)
    for name, q, seed in (("best", 0.9, 1), ("tied", 0.88, 2), ("worse", 0.3, 3)):
        p = _gen(q, seed)
        _run(store, "g", name, p, {"rougeL": _rougeL(p), "bleu": 1.0})
    p = _gen(0.9, 1)
    _run(store, "g", "copy-of-best", p, {"rougeL": _rougeL(p), "bleu": 1.0})
    return store


def test_columns_intervals_and_groups(gen_store: Store) -> None:
    rs = {r["run"]: r for r in rows(gen_store, "g")}
    for r in rs.values():
        for m in ("rougeL", "bleu", "rouge1"):
            assert r[f"{m}_ci_low"] <= r[f"{m}_ci_high"]
        assert r["rougeL_ci_low"] <= r["rougeL"] <= r["rougeL_ci_high"]
        assert r["n_seeds"] == 1 and r["rougeL_std"] is None
    best = max(rs.values(), key=lambda r: r["rougeL"])
    assert best["rank_group"] == 1 and best["p_vs_best"] is None
    assert rs["worse"]["rank_group"] == 2 and rs["worse"]["p_vs_best"] < 0.01
    assert rs["copy-of-best"]["rank_group"] == 1 and rs["copy-of-best"]["p_vs_best"] > 0.5
    text = render(list(rs.values()))
    assert "rougeL [95% CI]" in text and "group" in text and "p vs best" in text


def test_seeds_make_one_row_with_a_spread(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.save_experiment("g", "causal-lm", "m", {}, None, None)
    for s in (1, 2, 3):
        p = _gen(0.8, 10 + s)
        _run(store, "g", f"lora.s{s}", p, {"rougeL": _rougeL(p)}, variant="lora")
    p = _gen(0.2, 99)
    _run(store, "g", "ia3", p, {"rougeL": _rougeL(p)})
    rs = {r["run"]: r for r in rows(store, "g")}
    assert set(rs) == {"lora", "ia3"}
    lora = rs["lora"]
    assert lora["n_seeds"] == 3 and lora["runs"] == ["lora.s1", "lora.s2", "lora.s3"]
    assert lora["rougeL_std"] > 0 and lora["rougeL_ci_low"] <= lora["rougeL"] <= lora["rougeL_ci_high"]
    assert lora["rank_group"] == 1 and rs["ia3"]["rank_group"] == 2


def test_classification_accuracy_and_macro_f1(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.save_experiment("c", "classification", "m", {}, None, None)
    rng = random.Random(0)
    gold = [rng.randrange(3) for _ in range(150)]
    for name, acc in (("good", 0.85), ("bad", 0.4)):
        preds = [{"input": f"s{i}", "reference": "x", "output": "y", "gold_id": g,
                  "pred_id": g if rng.random() < acc else (g + 1) % 3} for i, g in enumerate(gold)]
        from sklearn.metrics import f1_score

        f1 = 100 * f1_score(gold, [p["pred_id"] for p in preds], average="macro")
        _run(store, "c", name, preds, {"macro_f1": f1, "accuracy": 100 * acc}, labels=["a", "b", "c"])
    rs = {r["run"]: r for r in rows(store, "c")}
    assert rs["good"]["rank_group"] == 1 and rs["bad"]["rank_group"] == 2
    for r in rs.values():
        assert r["macro_f1_ci_low"] <= r["macro_f1"] <= r["macro_f1_ci_high"]
        assert r["accuracy_ci_low"] <= r["accuracy_ci_high"]


def test_the_recommendation_says_when_runs_are_tied(gen_store: Store) -> None:
    from peftlab.report.collect import collect
    from peftlab.report.recommend import recommend

    # tied runs differ in cost: the cheapest of rank group 1 is the pick
    for name, params in (("best", 5000), ("tied", 100), ("copy-of-best", 900), ("worse", 1)):
        r = gen_store.find_run("g", name)
        gen_store.update(r.id, cost={"trainable_params": params, "peak_memory_mb": 10.0})
    data = collect(gen_store, ["g"])
    rec = recommend(data)
    assert {r["run"] for r in rec.tied} == {"best", "tied", "copy-of-best"}
    assert rec.recommended is not None and rec.run == "tied"
    assert rec.headline.startswith("Recommendation: **tied**")
    tie = next(p for p in rec.paragraphs if "cannot tell" in p)
    assert "**tied** is the cheapest of them by trainable parameters" in tie and "Holm-corrected" in tie
    assert "worse" not in tie
    page_row = {v.label: v.row for v in data.runs}
    assert page_row["worse"]["rank_group"] == 2
