"""One answer, the same on every surface: the situation of issue #25 built by hand (no model).

A classification experiment with seeds: a method whose best seed looks best of all while its
other seed collapses onto one class, a method whose two seeds disagree by 45 points, a steady
method, a cheap single-seed method, one that does not beat the majority-class row, and the
zero-shot row (an untrained head). The recommendation must be a method above the floors, the
same in the JSON leaderboard, the terminal, the HTML report, the Results API and Export, and
the per-seed rows must carry per-seed values.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, needs_shared

from peftlab.report.collect import collect
from peftlab.report.leaderboard import MAJORITY, rows
from peftlab.report.recommend import Budget, recommend
from peftlab.store import Store

pytestmark = needs_shared
FPB = DATA / "financial_phrasebank"
EXP = "fpb"


def _config() -> dict:
    from peftlab.config import ExperimentConfig

    return ExperimentConfig.model_validate({
        "name": EXP, "model": "all-minilm-l6-v2", "task": "classification",
        "data": {"train": str(FPB / "train.jsonl"), "validation": str(FPB / "validation.jsonl"),
                 "test": str(FPB / "test.jsonl"), "input": "text", "label": "label",
                 "max_train_examples": 300, "max_test_examples": 150},
        "methods": ["zero-shot", "full", "ia3", "vera", "lora", "prompt-tuning"],
        "seeds": [42, 43]}).model_dump(mode="json")


def _preds(gold: list[int], rule: Any) -> list[dict]:
    return [{"input": f"sentence {i}", "reference": str(g), "output": "x", "gold_id": g, "pred_id": rule(i, g)}
            for i, g in enumerate(gold)]


def _accurate(q: float, seed: int) -> Any:
    rng = random.Random(seed)
    draws = [rng.random() for _ in range(1000)]
    return lambda i, g: g if draws[i] < q else (g + 1 + (i % 2)) % 3


def _add(store: Store, name: str, method: str, preds: list[dict], cost: dict, variant: str | None = None,
         seed: int | None = None) -> None:
    from peftlab.evaluate.metrics import classification_metrics

    labels = ["negative", "neutral", "positive"]
    m = classification_metrics([p["pred_id"] for p in preds], [p["gold_id"] for p in preds], labels)
    m.pop("_per_class")
    cfg = {"variant": variant, "seed": seed} if variant else {}
    run, _ = store.upsert_run(EXP, name, method, name, cfg)
    d = store.run_dir(EXP, name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
    store.finish(run.id, "done", metrics=m, cost=cost,
                 info={"predictions": f"runs/{EXP}/{name}/predictions.jsonl", "labels": labels,
                       "data": {"test": len(preds)}})


@pytest.fixture
def fpb(tmp_path: Path) -> Store:
    return build_store(tmp_path / "store")


def build_store(root: Path) -> Store:
    """The experiment of the module docstring, written into a new store at `root`."""
    from peftlab.config import ExperimentConfig
    from peftlab.data.prepare import prepare_data

    store = Store(root)
    cfg = _config()
    store.save_experiment(EXP, "classification", "all-minilm-l6-v2", cfg, None, None)
    data = prepare_data(ExperimentConfig.model_validate(cfg).data, "classification", 42)
    gold = [int(e.label or 0) for e in data.test]
    top = Counter(int(e.label or 0) for e in data.train).most_common(1)[0][0]
    one = (top + 1) % 3

    def cost(params: int, pct: float, mem: float) -> dict:
        return {"trainable_params": params, "trainable_percent": pct, "peak_memory_mb": mem, "train_seconds": 10.0}

    # prompt-tuning: one lucky seed (95% right) and one collapsed onto a single class
    _add(store, "prompt-tuning.s42", "prompt-tuning", _preds(gold, lambda i, g: one), cost(10, 0.01, 600),
         "prompt-tuning", 42)
    _add(store, "prompt-tuning.s43", "prompt-tuning", _preds(gold, _accurate(0.95, 1)), cost(10, 0.01, 600),
         "prompt-tuning", 43)
    # full: seeds that disagree by far (90% and 45% right)
    _add(store, "full.s42", "full", _preds(gold, _accurate(0.90, 2)), cost(22_000_000, 100.0, 3000), "full", 42)
    _add(store, "full.s43", "full", _preds(gold, _accurate(0.45, 3)), cost(22_000_000, 100.0, 3000), "full", 43)
    # ia3: steady; vera: a little worse, cheaper in memory, dearer in parameters
    _add(store, "ia3.s42", "ia3", _preds(gold, _accurate(0.82, 4)), cost(100, 0.5, 2000), "ia3", 42)
    _add(store, "ia3.s43", "ia3", _preds(gold, _accurate(0.80, 5)), cost(100, 0.5, 2000), "ia3", 43)
    _add(store, "vera", "vera", _preds(gold, _accurate(0.78, 6)), cost(200, 1.0, 500))
    # lora: the majority class, except on a few rows where it guesses: not better than always 'neutral'
    _add(store, "lora", "lora", _preds(gold, lambda i, g: (i % 3) if i % 4 == 0 else top), cost(300, 1.0, 700))
    _add(store, "zero-shot", "zero-shot", _preds(gold, lambda i, g: i % 3), cost(0, 0.0, 500))
    return store


def test_the_answer_is_a_method_above_the_floors(fpb: Store) -> None:
    rs = {r["run"]: r for r in rows(fpb, EXP)}
    assert set(rs) == {"prompt-tuning", "full", "ia3", "vera", "lora", "zero-shot", MAJORITY}
    # one row per method; its seeds under it with their own values (not the row's pooled ones)
    pt = rs["prompt-tuning"]
    assert pt["n_seeds"] == 2 and [s["run"] for s in pt["seeds"]] == ["prompt-tuning.s42", "prompt-tuning.s43"]
    own = {r.name: r.metrics["macro_f1"] for r in fpb.runs(EXP)}
    for s in pt["seeds"] + rs["full"]["seeds"]:
        assert s["macro_f1"] == own[s["run"]]
    assert pt["seeds"][1]["macro_f1"] > max(own[n] for n in own if not n.startswith("prompt"))  # the lucky seed
    assert "1 of 2 seeds" in pt["collapsed"]
    assert rs["full"]["representative"] in {"full.s42", "full.s43"}
    rec = recommend(collect(fpb, [EXP]))
    why = {r["run"]: w for r, w in rec.passed_over}
    assert why["prompt-tuning"].startswith("its predictions collapse onto one class")
    assert why["lora"].startswith("not significantly better than majority-class")
    assert "zero-shot" in why and rs["lora"]["beats_floor"] is False and rs["ia3"]["beats_floor"] is True
    # the field is rank group 1 of what clears the floors; ia3 is its cheapest by trainable parameters
    assert rec.run == "ia3" and rec.headline.startswith("Recommendation: **ia3**")
    assert rec.representative in {"ia3.s42", "ia3.s43"}
    assert "prompt-tuning.s43" not in rec.text.split("Passed over")[0]  # never a single seed


def test_p_values_count_the_variance_between_seeds(fpb: Store) -> None:
    import numpy as np

    from peftlab.report.significance import example_scores
    from peftlab.stats import paired_pvalue

    rs = {r["run"]: r for r in rows(fpb, EXP)}
    best = next(r for r in rs.values() if r.get("rank") == 1)
    assert best["run"] in {"ia3", "prompt-tuning", "vera"}
    full = rs["full"]
    # full's seeds disagree by 45 points: its interval covers the best's mean, and the test over
    # seeds and examples cannot tell them apart ...
    assert full["macro_f1_ci_low"] <= best["macro_f1"] <= full["macro_f1_ci_high"]
    assert full["p_vs_best"] > 0.05 and full["rank_group"] == 1
    # ... while a test over examples alone, with the trained models held fixed, calls it significant
    runs = {r.name: r for r in fpb.runs(EXP)}
    acc = {n: example_scores(runs[n]).sentence["accuracy"] for n in ("full.s42", "full.s43", "ia3.s42", "ia3.s43")}
    fixed = paired_pvalue(np.mean([acc["full.s42"], acc["full.s43"]], 0), np.mean([acc["ia3.s42"], acc["ia3.s43"]], 0))
    assert fixed < 0.01


def test_the_same_answer_on_every_surface(fpb: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastapi.testclient import TestClient

    from peftlab.cli import main
    from peftlab.serve.app import Settings, create_app

    root = str(fpb.root)
    assert main(["--store", root, "leaderboard", EXP, "--format", "json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in js if r.get("recommended")] == ["ia3"]
    assert main(["--store", root, "leaderboard", EXP]) == 0
    table = capsys.readouterr().out
    assert "ia3 ★" in table and "↳ full.s43" in table and "Recommendation: ia3" in table
    assert main(["--store", root, "leaderboard", EXP, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert re.search(r"^\| 1 +\| ia3 ★ +\|", md, re.M) and "Recommendation: **ia3**" in md
    ranked = [ln.split("|")[2].strip().removesuffix(" ★") for ln in md.splitlines() if re.match(r"^\| \d", ln)]
    assert md.count("★") == 1 and ranked == [r["run"] for r in js if r.get("rank")]
    out = tmp_path / "r.html"
    assert main(["--store", root, "report", EXP, "-o", str(out), "--no-bertscore"]) == 0
    assert capsys.readouterr().out.startswith("Recommendation: ia3,")
    page = out.read_text(encoding="utf-8")
    rec_sec = re.search(r'<section id="recommendation">(.*?)</section>', page, re.S).group(1)
    lb_sec = re.search(r'<section id="leaderboard">(.*?)</section>', page, re.S).group(1)
    assert "Recommendation: <b>ia3</b>" in rec_sec
    starred = re.findall(r'</span>([\w.-]+) <span class="badge done" title="the recommendation">', lb_sec)
    assert starred == ["ia3"]
    # one row per method in the report's table, the seeds under it: no seed row carries a rank
    body = lb_sec.split("<tbody>")[1]
    assert len(re.findall(r'<tr class="seed-row"', body)) == 6  # 3 methods x 2 seeds
    full = rows(fpb, EXP)
    ci = next(r for r in full if r["run"] == "full")
    assert f"[{ci['macro_f1_ci_low']:.1f}, {ci['macro_f1_ci_high']:.1f}]" in lb_sec  # the same digits
    client = TestClient(create_app(Settings(store=str(fpb.root), start_worker=False)), base_url="http://127.0.0.1")
    lb = client.get(f"/api/experiments/{EXP}/leaderboard").json()
    assert lb["recommendation"]["run"] == "ia3" and lb["recommendation"]["final"] is True
    assert [r for r in lb["rows"] if r["run"] == "full"][0]["macro_f1_ci_low"] == ci["macro_f1_ci_low"]
    ex = client.get(f"/api/experiments/{EXP}/exports").json()
    assert ex["recommended"] == lb["recommendation"]["representative"] and ex["recommended"].startswith("ia3.s")


def test_a_budget_changes_the_headline(fpb: Store) -> None:
    data = collect(fpb, [EXP])
    rec = recommend(data, Budget(max_memory_mb=1000))
    assert rec.run == "vera" and rec.headline.startswith("Recommendation within your budget (peak memory ≤ 1000 MB): "
                                                         "**vera**")
    assert {r["run"] for r, _ in rec.over_budget} >= {"ia3", "full"}
    assert "it is the only one within your budget" in rec.text and "significantly better than every" not in rec.text
    none = recommend(data, Budget(max_memory_mb=100))
    assert none.run is None and none.headline.startswith("**No recommendation within your budget (peak memory ≤ 100")


def test_no_answer_while_runs_are_going(fpb: Store) -> None:
    from peftlab.tune.plan import plan_file

    f = plan_file(fpb.root, EXP)  # a launch whose plan makes runs that do not exist yet
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"runs": ["ia3.s42", "dora.t0", "dora"], "total": 3}), encoding="utf-8")
    assert recommend(collect(fpb, [EXP])).run == "ia3"  # nothing going: a plan left over blocks nothing
    fpb.upsert_run(EXP, "dora.t0", "dora", "dora.t0", {"role": "trial", "variant": "dora"})  # queued
    rec = recommend(collect(fpb, [EXP]))
    assert rec.run is None and not rec.final and rec.pending == ["dora.t0", "dora"]
    assert rec.headline.startswith("**No recommendation yet**: 2 run(s) still going (dora.t0, dora)")


def test_compare_refuses_experiments_of_different_tasks(fpb: Store) -> None:
    from peftlab.errors import PeftlabError

    fpb.save_experiment("gen", "causal-lm", "stories260k", {}, None, None)
    with pytest.raises(PeftlabError, match="cannot be ranked together: fpb is classification"):
        collect(fpb, [EXP, "gen"])


def test_the_playground_example_is_a_test_row_of_the_final_runs(fpb: Store) -> None:
    from peftlab.serve.routers.results import outputs

    # a tuning trial's predictions are of the validation split: never offered as a test example
    val = [{"input": f"validation sentence {i}", "reference": "x", "output": "x", "gold_id": 1, "pred_id": 1}
           for i in range(5)]
    _add(fpb, "ia3.t0", "ia3", val, {"trainable_params": 100})
    trial = fpb.find_run(EXP, "ia3.t0")
    fpb.update(trial.id, config={"role": "trial", "variant": "ia3"})
    got = outputs(fpb, EXP, limit=3)
    assert "ia3.t0" not in got["runs"] and {"ia3.s42", "ia3.s43", "lora"} <= set(got["runs"])
    assert got["rows"][0]["input"] == "sentence 0" and set(got["rows"][0]["outputs"]) == set(got["runs"])
    assert "ia3.t0" not in {r["run"] for r in rows(fpb, EXP)}


def test_the_web_compare_refuses_experiments_of_different_tasks(fpb: Store) -> None:
    from fastapi.testclient import TestClient

    from peftlab.serve.app import Settings, create_app

    fpb.save_experiment("gen", "causal-lm", "stories260k", {}, None, None)
    run, _ = fpb.upsert_run("gen", "zero-shot", "zero-shot", "zero-shot", {})
    fpb.finish(run.id, "done", metrics={"rougeL": 10.0})
    client = TestClient(create_app(Settings(store=str(fpb.root), start_worker=False)), base_url="http://127.0.0.1")
    r = client.get("/api/compare/report.html", params={"experiments": f"{EXP},gen"})
    assert r.status_code == 422 and "cannot be ranked together" in r.json()["detail"]


def test_compare_does_not_rank_across_different_test_rows(tmp_path: Path) -> None:
    from peftlab.evaluate.metrics import generation_metrics

    store = Store(tmp_path / "s")
    for exp, offset in (("a", 0), ("b", 100)):
        store.save_experiment(exp, "causal-lm", "m", {}, None, None)
        for name, method, good in (("zero-shot", "zero-shot", 0.1), ("lora", "lora", 0.9)):
            rng = random.Random(offset + len(name))
            preds = [{"input": f"table {offset + i}", "reference": f"title {i} of the sales table",
                      "output": f"title {i} of the sales table" if rng.random() < good else "no"} for i in range(40)]
            m = generation_metrics([p["output"] for p in preds], [[p["reference"]] for p in preds])
            run, _ = store.upsert_run(exp, name, method, name, {})
            d = store.run_dir(exp, name)
            d.mkdir(parents=True, exist_ok=True)
            (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
            store.finish(run.id, "done", metrics=m, info={"predictions": f"runs/{exp}/{name}/predictions.jsonl"})
    alone = recommend(collect(store, ["a"]))
    assert alone.run == "lora"
    both = recommend(collect(store, ["a", "b"]))
    assert both.run is None and both.headline.startswith("**No recommendation across these experiments**")
    rs = rows(store, ["a", "b"])
    assert {r["run"] for r in rs} == {"a/zero-shot", "a/lora", "b/zero-shot", "b/lora"}


def test_times_measured_beside_other_jobs_are_said_so(fpb: Store) -> None:
    run = fpb.find_run(EXP, "vera")
    fpb.update(run.id, cost={**run.cost, "train_cpu_seconds": 9.0, "threads": 2, "cpus": 2,
                             "load_avg": {"train_start": 7.5, "train_end": 9.1}})
    rs = {r["run"]: r for r in rows(fpb, EXP)}
    assert rs["vera"]["timed_under_load"] == 9.1 and rs["vera"]["train_cpu_seconds"] == 9.0
    assert "timed_under_load" not in rs["ia3"]
    text = recommend(collect(fpb, [EXP])).text
    assert "Timed beside other jobs: vera (load 9.1): their train times are not comparable" in text
