"""The HTML report, from a real small experiment (stories260k, in-process), and its parts.

One module-scoped experiment is trained once: zero-shot, full, lora, a lora that diverges
(absurd learning rate) and a lora that fails (a target module that does not exist). Every
test reads that store. The browser tests open the same report in headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import MINILM, needs_shared, tiny_causal, write_experiment

from peftlab.report.html import ReportOptions, build_report
from peftlab.report.plots import Axis, nice_ticks
from peftlab.report.recommend import Budget, pareto_front, recommend
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

SECTION_IDS = ("recommendation", "leaderboard", "curves", "pareto", "health", "outputs", "config", "environment",
               "metrics")


# -- unit tests (no model) -------------------------------------------------------------
def test_pareto_front_keeps_only_undominated_points() -> None:
    # (cost, quality): lower cost and higher quality are better.
    pts = [(0, 10.0), (5, 30.0), (3, 20.0), (4, 15.0), (10, 30.0), (8, 40.0)]
    assert pareto_front(pts) == [0, 1, 2, 5]
    assert pareto_front([(1, 5.0), (1, 5.0)]) == [0, 1]  # identical points are both on it
    assert pareto_front([]) == []


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    t = nice_ticks(0.13, 0.87)
    assert t[0] <= 0.13 and t[-1] >= 0.87
    steps = {round(b - a, 9) for a, b in zip(t, t[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() in (0.1, 0.2, 0.25)
    assert nice_ticks(5, 5)[0] < 5 < nice_ticks(5, 5)[-1]  # a flat series still gets an axis


def test_log_axis_puts_zero_left_of_the_smallest_decade() -> None:
    ax = Axis([0, 1200, 90_000, 260_000], log=True)
    assert ax(0) < ax(1200) < ax(90_000) < ax(260_000) <= 1.0
    assert ax(0) >= 0.0
    assert 0.0 in ax.ticks and 1000.0 in ax.ticks and 1_000_000.0 in ax.ticks


def test_budget_fits_uses_recorded_costs() -> None:
    v = {"peak_memory_mb": 900.0, "train_seconds": 12.0, "trainable_percent": 0.5}  # a leaderboard row's costs
    assert Budget(max_memory_mb=1000).fits(v)
    assert Budget(max_memory_mb=800).over(v) == ["peak memory 900 > 800 MB"]
    assert not Budget(max_memory_mb=800).fits(v)
    assert not Budget(max_train_seconds=10).fits(v)
    assert Budget(max_trainable_percent=1, max_train_seconds=12).fits(v)
    assert not Budget().active and Budget(max_memory_mb=1).active


def test_a_run_on_other_library_versions_is_flagged() -> None:
    from peftlab.report.collect import RunView, version_drift
    from peftlab.report.sections import environment

    class R:
        def __init__(self, name: str, transformers: str) -> None:
            self.name, self.host, self.status = name, "h", "done"
            self.info = {"versions": {"torch": "2.13.0", "transformers": transformers}, "seed": 42}

    views = [RunView(run=R(n, tf), label=n, experiment="e", task="causal-lm", row={}, curves={}, color="#000",  # type: ignore[arg-type]
                     index=i) for i, (n, tf) in enumerate([("lora", "5.23.0"), ("ia3", "5.24.0"), ("dora", "5.23.0")])]
    [note] = version_drift(views)
    assert note.startswith("ia3 was trained on other library versions") and "transformers 5.24.0 (others 5.23.0)" in note
    assert "torch" not in note
    from peftlab.report.collect import ReportData

    page = environment.render(environment.view(ReportData("e", [], views, "rougeL", ["causal-lm"])))
    assert "version-drift" in page and "ia3 was trained on other library versions" in page
    assert version_drift(views[:1] + views[2:]) == []  # one set: nothing to say


def _generation_views() -> list:
    """Two generation runs over the same two test rows (the Run fields the outputs table reads)."""
    from peftlab.report.collect import RunView

    class R:
        status, metrics, info = "done", {}, {}

    refs = ["the cat sat on the mat", "Apple revenue from 2010 to 2020"]

    def view(i: int, outs: list[str]) -> RunView:
        preds = [{"input": f"row {j}", "reference": r, "output": o, "stopped": True}
                 for j, (r, o) in enumerate(zip(refs, outs, strict=True))]
        return RunView(run=R(), label=f"run{i}", experiment="e", task="causal-lm", row={}, curves={},  # type: ignore[arg-type]
                       color="#000", index=i, predictions=preds)

    return [view(0, ["the cat sat on the mat", "Revenue of Apple 2010 to 2020"]),
            view(1, ["a dog barked", "Revenue of Apple 2010 to 2020"])]


def test_row_scores_are_computed_once_and_average_to_the_corpus_rouge() -> None:
    """The outputs table's per-row ROUGE-L comes from the collect step (`RunView.row_scores`,
    `evaluate.metrics.sentence_scores`); its mean is the corpus rougeL a run records."""
    from peftlab.evaluate.metrics import generation_metrics
    from peftlab.report.collect import ReportData
    from peftlab.report.sections import outputs

    a, b = _generation_views()
    for v in (a, b):
        assert v.row_scores is v.row_scores  # computed once
        preds = v.predictions or []
        corpus = generation_metrics([p["output"] for p in preds], [[p["reference"]] for p in preds])
        assert len(v.row_scores) == len(preds)
        assert sum(r["rougeL"] for r in v.row_scores) / len(preds) == pytest.approx(corpus["rougeL"])
    assert a.row_scores[0]["rougeL"] == pytest.approx(100.0)
    # The section renders a prepared view: the scores are read from row_scores, not recomputed.
    view = outputs.view(ReportData("e", [], [a, b], "rougeL", ["causal-lm"]), sample=20, all_outputs=False)
    first, second = view.rows
    assert first.disagree and not second.disagree and view.n_disagree == 1
    cells = [c for c in first.cells if c is not None]
    assert [c.score for c in cells] == [a.row_scores[0]["rougeL"], b.row_scores[0]["rougeL"]]
    assert [c.top for c in cells] == [True, False]  # the best output of a row where runs disagree
    page = outputs.render(view)
    assert "RL 100" in page and f"RL {b.row_scores[0]['rougeL']:.0f}<" in page
    assert 'class="top"' in page and "only rows where runs disagree (1)" in page


def test_config_diff_highlights_against_the_first_of_tied_common_values() -> None:
    """Which cells are highlighted does not depend on set order (PYTHONHASHSEED)."""
    from peftlab.report.collect import ReportData, RunView
    from peftlab.report.sections import config

    class R:
        def __init__(self, lr: float) -> None:
            self.method, self.config = "lora", {}
            self.resolved = {"learning_rate": lr, "options": {"r": 8}}

    views = [RunView(run=R(lr), label=f"r{i}", experiment="e", task="causal-lm", row={}, curves={},  # type: ignore[arg-type]
                     color="#000", index=i) for i, lr in enumerate([3e-4, 1e-3, 1e-3, 3e-4, 5e-3])]
    view = config.view(ReportData("e", [], views, "rougeL", ["causal-lm"]))
    [lr] = [d for d in view.differ if d.key == "learning_rate"]
    assert lr.common == "0.0003"
    assert {"method", "options.r"} <= {s.key for s in view.same}


# -- the real experiment ---------------------------------------------------------------
@pytest.fixture(scope="module")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not MINILM.is_dir():
        pytest.skip("../shared/models not present")
    tmp = tmp_path_factory.mktemp("report")
    methods = ["zero-shot", "full", "lora", {"name": "lora", "label": "lora-hot", "learning_rate": 1.0e30}]
    body = tiny_causal(methods, max_steps=4, eval_every=2)
    body["evaluation"]["bertscore_model"] = str(MINILM)
    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    bad = write_experiment(tmp, {**body, "methods": [{"name": "lora", "label": "lora-bad", "options": {"r": 2}}]},
                           "bad.yaml")
    # lora-bad crashes in training (a simulated crash; the preflight catches real config errors
    # before anything runs), so the store holds a failed run with its error, as after a real crash.
    import peftlab.train.trainer as trainer

    def crash(*a: object, **k: object) -> None:
        raise RuntimeError("simulated crash in training for the report test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "train_model", crash)
        runs += run_experiment(plan(bad), store, isolation="inprocess", echo=lambda *_: None)
    status = {r.name: r.status for r in runs}
    assert status["zero-shot"] == status["full"] == status["lora"] == "done", status
    assert status["lora-hot"] == "diverged" and status["lora-bad"] == "failed", status
    # A second experiment, for `compare`: the same data, only the zero-shot row.
    body_b = tiny_causal(["zero-shot"])
    body_b["name"] = "tiny-b"
    body_b["evaluation"]["bertscore_model"] = str(MINILM)
    run_experiment(plan(write_experiment(tmp, body_b, "b.yaml")), store, isolation="inprocess", echo=lambda *_: None)
    out = tmp / "report.html"
    res = build_report(store, ["tiny"], out, options=ReportOptions(png_dir=tmp / "png"))
    return {"store": store, "tmp": tmp, "res": res, "html": out.read_text(encoding="utf-8"), "path": out}


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


@needs_shared
def test_report_has_every_section_and_every_run(report_store: dict) -> None:
    page, store = report_store["html"], report_store["store"]
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in page
    lb = _section(page, "leaderboard")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", lb.split("<tbody>")[1], re.S)
    runs = store.runs("tiny")
    assert len(rows) == len(runs) == 5
    for r in runs:
        assert any(f"</span>{r.name}" in row for row in rows), f"{r.name} not in the leaderboard"
    # Failed and diverged runs are shown with their error.
    bad = next(r for r in runs if r.name == "lora-bad")
    assert html.escape(bad.error.split("\n")[0][:60], quote=True) in lb
    assert "diverged" in lb and "at step" in lb
    # Every metric and cost column is there.
    for col in ("rougeL", "rouge1", "bleu", "bertscore_f1", "eval_loss", "rouge1_precision", "trainable parameters",
                "peak memory (MB)", "train time (s)", "adapter size", "forgetting (nats/token)"):
        assert f">{col} " in lb, col
    # forgetting with its interval; the zero-shot row's is 0 (issue 29)
    zs = next(row for row in rows if "</span>zero-shot" in row)
    assert '0.000 <span class="ci" title="95% confidence interval">[0.000, 0.000]</span>' in zs


@needs_shared
def test_report_is_self_contained(report_store: dict) -> None:
    page = report_store["html"]
    assert "<script>" in page and "<style>" in page
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", page)
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)
    assert "@import" not in page and "url(" not in page


@needs_shared
def test_curves_overlay_every_training_run(report_store: dict) -> None:
    curves = _section(report_store["html"], "curves")
    charts = re.findall(r'<div class="chartbox" data-chart="([^"]+)">(.*?)</div>', curves, re.S)
    names = [n for n, _ in charts]
    assert names[:3] == ["train_loss", "eval_loss", "val_rougeL"]  # the main metric on validation, over steps
    data = report_store["res"].data
    for name, svg in charts[:2]:
        assert svg.startswith("<svg")
        for v in data.runs:
            if v.curves.get(name):
                group = re.search(rf'<g class="series" data-series="{v.index}">(.*?)</g>', svg, re.S)
                assert group and v.color in group.group(1), (name, v.label)
    assert 'class="toggle" data-series=' in curves
    zero = next(v for v in data.runs if v.label == "zero-shot")
    assert f'data-series="{zero.index}"' not in curves.split('<div class="charts">')[1]  # nothing to plot


@needs_shared
def test_pareto_charts_mark_the_frontier(report_store: dict) -> None:
    sec = _section(report_store["html"], "pareto")
    for key in ("trainable_params", "peak_memory_mb", "train_seconds", "adapter_bytes", "forgetting"):
        assert f'data-chart="pareto-{key}"' in sec
    assert sec.count('class="frontier"') == 5  # the four costs, and forgetting (issue 29)
    data = report_store["res"].data
    # Points are labelled; zero-shot trains nothing (0 parameters, 0 s, 0 bytes), so nothing is
    # cheaper on those axes: it starts their frontiers. Peak memory is measured, so any run may win it.
    notes = re.findall(r"Frontier \(cheapest first\): ([^<]+)<", sec)
    assert len(notes) == 5
    for key, note in zip(("trainable_params", "peak_memory_mb", "train_seconds", "adapter_bytes"), notes[:4], strict=True):
        if key != "peak_memory_mb":
            assert note.startswith("zero-shot"), (key, note)
    done = [v.label for v in data.runs if v.done]
    for label in done:
        assert f">{label}</text>" in sec


@needs_shared
def test_recommendation_states_the_measured_numbers(report_store: dict) -> None:
    res = report_store["res"]
    rec = res.recommendation
    main = res.data.main_metric
    best = rec.best
    assert best is not None and best["rank"] == 1
    # 4 steps on 8 test rows: no trained run is significantly better than zero-shot, so the answer
    # recommends nothing and says why for each, with the measured numbers
    assert rec.recommended is None and rec.headline.startswith("**No recommendation**")
    text = rec.text
    assert f"{main} {best[main]:.2f}" in text
    passed = {r["run"]: why for r, why in rec.passed_over}
    for name in ("lora", "full"):  # flagged (never stop) or below the floor: either way, named with why
        assert passed[name].startswith(("not significantly better than zero-shot on rougeL (p ",
                                        "its generations are flagged: ")), passed
    assert "lora-hot (diverged at step" in text and "lora-bad (failed" in text
    rec_html = _section(res.path.read_text(encoding="utf-8"), "recommendation")
    assert "<b>No recommendation</b>" in rec_html and "Passed over:" in _text(rec_html)


@needs_shared
def test_budget_picks_the_best_run_that_fits(report_store: dict, tmp_path: Path) -> None:
    store = report_store["store"]
    res = build_report(store, ["tiny"], tmp_path / "r.html",
                       options=ReportOptions(budget=Budget(max_trainable_percent=50), bertscore=False))
    # nothing clears the floor here, budget or not: the budget is named, the answer is still none
    assert res.recommendation.recommended is None and res.recommendation.budget.describe() == \
        "trainable parameters ≤ 50%"
    assert res.recommendation.as_dict()["budget"] == "trainable parameters ≤ 50%"


@needs_shared
def test_the_recommendation_is_made_once_and_is_the_one_shown(report_store: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import peftlab.report.html as page

    made = []

    def counted(*a, **k):  # noqa: ANN002, ANN003, ANN202
        made.append(recommend(*a, **k))
        return made[-1]

    monkeypatch.setattr(page, "recommend", counted)
    res = build_report(report_store["store"], ["tiny"], tmp_path / "once.html", options=ReportOptions(bertscore=False))
    assert len(made) == 1 and res.recommendation is made[0]
    assert res.recommendation.html in _section(res.path.read_text(encoding="utf-8"), "recommendation")


@needs_shared
def test_bertscore_is_cached_in_the_store_and_names_its_encoder(report_store: dict, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = report_store["store"]
    done = [r for r in store.runs("tiny") if r.status == "done"]
    for r in done:
        for k in ("bertscore_precision", "bertscore_recall", "bertscore_f1"):
            assert 0.0 <= r.metrics[k] <= 100.0
        # named portably (the experiment gave an absolute path: the folder's name); the path stays in the store
        assert r.info["bertscore"]["model"] == MINILM.name and r.info["bertscore"]["model_path"] == str(MINILM)
        assert r.info["bertscore"]["num_layers"] == 6
    assert MINILM.name in _section(report_store["html"], "metrics")
    assert str(MINILM) not in _section(report_store["html"], "metrics")  # the report is mailed: no path of this machine
    # A second report reads the cache: computing again would fail here.
    import peftlab.evaluate.bertscore as bs

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("BERTScore recomputed despite the cache")

    monkeypatch.setattr(bs, "bertscore", boom)
    monkeypatch.setattr(bs, "_scorer", boom)
    res = build_report(store, ["tiny"], tmp_path / "again.html")
    assert not res.problems
    again = {r.name: r.metrics["bertscore_f1"] for r in store.runs("tiny") if r.status == "done"}
    assert again == {r.name: r.metrics["bertscore_f1"] for r in done}


@needs_shared
def test_outputs_side_by_side(report_store: dict, tmp_path: Path) -> None:
    store = report_store["store"]
    sec = _section(report_store["html"], "outputs")
    body = sec.split("<tbody>")[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    lora = store.find_run("tiny", "lora")
    preds = [json.loads(line) for line in lora.file("predictions").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(preds) == 8  # 8 test rows <= the default sample of 20: all shown
    head = sec.split("<tbody>")[0]
    done = [v for v in report_store["res"].data.runs if v.done]
    assert head.count("<th>") == 3 + len(done)  # '#', input, reference, then one column per finished run
    for v in done:
        assert f"</span>{v.label}</th>" in head
    for p in preds:  # every reference and lora output is in the table
        assert html.escape(p["reference"], quote=True) in body
    n_dis = len(re.findall(r'<tr class="disagree', body))
    assert f"only rows where runs disagree ({n_dis})" in sec
    # A sample smaller than the test set, and --all-outputs.
    few = build_report(store, ["tiny"], tmp_path / "few.html", options=ReportOptions(sample=3, bertscore=False))
    few_sec = _section(few.path.read_text(encoding="utf-8"), "outputs")
    assert len(re.findall(r"<tr[^>]*>", few_sec.split("<tbody>")[1])) == 3
    assert "3 of the 8 test inputs" in few_sec
    every = build_report(store, ["tiny"], tmp_path / "all.html",
                         options=ReportOptions(sample=3, all_outputs=True, bertscore=False))
    assert "all 8 test inputs" in _section(every.path.read_text(encoding="utf-8"), "outputs")


@needs_shared
def test_health_config_and_environment(report_store: dict) -> None:
    page, store = report_store["html"], report_store["store"]
    health = _section(page, "health")
    for r in store.runs("tiny"):
        if r.status != "done":
            continue
        h = r.info["health"]
        assert f"{h['hit_max_pct']:.0f}%" in health
        if not h["healthy"]:
            assert html.escape(h["problems"][0]) in health
            assert "⚠ unhealthy" in health
    config = _section(page, "config")
    diff = config.split("<details>")[0]
    assert "learning_rate" in diff and "method" in diff and "options.r" in diff
    assert "1e+30" in diff  # lora-hot's learning rate
    assert "experiment.training.max_steps" not in diff  # same for all: collapsed below
    assert "experiment.training.max_steps" in config
    env = _section(page, "environment")
    versions = store.find_run("tiny", "lora").info["versions"]
    assert f"<td>{versions['torch']}</td>" in env and "version.transformers" in env and "machine.device" in env
    assert "seed" in env


@needs_shared
def test_png_charts_for_slides(report_store: dict) -> None:
    from PIL import Image, ImageStat

    pngs = report_store["res"].pngs
    names = {p.name for p in pngs}
    assert {"curve_train_loss.png", "curve_eval_loss.png", "pareto_trainable_params.png",
            "pareto_peak_memory_mb.png", "pareto_train_seconds.png", "pareto_adapter_bytes.png"} <= names
    for p in pngs:
        with Image.open(p) as im:
            assert im.size[0] >= 800
            stat = ImageStat.Stat(im.convert("L"))
            assert stat.stddev[0] > 10, f"{p.name} looks blank"


@needs_shared
def test_compare_two_experiments_and_runs_by_id(report_store: dict, tmp_path: Path) -> None:
    from peftlab.cli import main

    store = report_store["store"]
    out = tmp_path / "cmp.html"
    code = main(["--store", str(store.root), "compare", "tiny", "tiny-b", "-o", str(out), "--no-bertscore"])
    assert code == 0
    page = out.read_text(encoding="utf-8")
    lb = _section(page, "leaderboard")
    for name in ("tiny/zero-shot", "tiny/lora", "tiny/full", "tiny-b/zero-shot"):
        assert f"</span>{name}" in lb
    ids = [store.find_run("tiny", "lora").id, store.find_run("tiny-b", "zero-shot").id]
    out2 = tmp_path / "ids.html"
    assert main(["--store", str(store.root), "compare", "--runs", f"{ids[0]},{ids[1]}", "-o", str(out2),
                 "--no-bertscore"]) == 0
    lb2 = _section(out2.read_text(encoding="utf-8"), "leaderboard")
    assert len(re.findall(r"<tr[^>]*>", lb2.split("<tbody>")[1])) == 2
    assert main(["--store", str(store.root), "compare", "--runs", "99999", "-o", str(out2)]) == 2


@needs_shared
def test_cli_report_with_budget_and_pngs(report_store: dict, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from peftlab.cli import main

    store = report_store["store"]
    out = tmp_path / "cli.html"
    code = main(["--store", str(store.root), "report", "tiny", "-o", str(out), "--max-train-seconds", "1e9",
                 "--png-dir", str(tmp_path / "png"), "--sample", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "No recommendation" in printed and "Passed over:" in printed
    assert f"report written to {out}" in printed
    assert out.is_file() and list((tmp_path / "png").glob("*.png"))
    assert main(["--store", str(store.root), "report", "nope", "-o", str(out)]) == 2


@pytest.fixture(scope="module")
def image_report(tmp_path_factory: pytest.TempPathFactory, tiny_vit: Path) -> dict:
    """Image classification on a tiny random ViT: zero-shot and lora, a few steps."""
    from conftest import DATA

    tmp = tmp_path_factory.mktemp("report-img")
    body = {
        "name": "img", "model": str(tiny_vit), "task": "image-classification",
        "data": {"train": str(DATA / "pneumoniamnist" / "train.jsonl"),
                 "validation": str(DATA / "pneumoniamnist" / "validation.jsonl"),
                 "test": str(DATA / "pneumoniamnist" / "test.jsonl"), "image": "image_png_b64", "label": "label_name",
                 "max_train_examples": 32, "max_validation_examples": 8, "max_test_examples": 24},
        "methods": ["zero-shot", "lora"],
        "training": {"max_steps": 4, "batch_size": 8, "logging_steps": 1},
        "evaluation": {"batch_size": 8},
    }
    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert all(r.status == "done" for r in runs), [r.error for r in runs]
    res = build_report(store, ["img"], tmp / "img.html", options=ReportOptions(png_dir=tmp / "png"))
    return {"store": store, "res": res, "html": res.path.read_text(encoding="utf-8")}


@needs_shared
def test_classification_report_has_confusion_matrices_and_per_class_scores(image_report: dict) -> None:
    page, store, res = image_report["html"], image_report["store"], image_report["res"]
    assert '<section id="health">' not in page  # generation health is for generation tasks
    assert res.data.main_metric == "macro_f1"
    assert "bertscore_f1" not in _section(page, "leaderboard")  # not a generation task
    # forgetting is not measured for a classifier (issue 29): its column says n/a, with why
    assert ">forgetting (nats/token) " in _section(page, "leaderboard")
    assert '<span title="not measured for classification: the classification head is new' in page
    sec = _section(page, "classes")
    for run in store.runs("img"):
        card = re.search(rf'<div class="card" data-run="{run.name}">(.*?)</div>', sec, re.S)
        assert card, run.name
        preds = [json.loads(line) for line in run.file("predictions").read_text(encoding="utf-8").splitlines()]
        labels = run.info["labels"]
        cm = re.search(r'<table class="cm">(.*?)</table>', card.group(1), re.S).group(1)
        counts = [[int(x) for x in re.findall(r'<td class="(?:diag)?"[^>]*>(\d+)</td>', row)]
                  for row in re.findall(r"<tr><th>.*?</tr>", cm.split("<tbody>")[1], re.S)]
        assert len(counts) == len(labels) and all(len(r) == len(labels) for r in counts)
        assert sum(map(sum, counts)) == len(preds) == 24
        for i in range(len(labels)):  # row i = true label i, column j = predicted j
            for j in range(len(labels)):
                assert counts[i][j] == sum(1 for p in preds if p["gold_id"] == i and p["pred_id"] == j)
        for name, d in run.info["per_class"].items():
            assert f'<td>{name}</td><td class="num">{100 * d["precision"]:.1f}</td>' in card.group(1)
    outputs = _section(page, "outputs")
    assert 'class="right"' in outputs or 'class="wrong"' in outputs
    assert 'value="haswrong"' in outputs
    assert {p.name for p in res.pngs} >= {"confusion_zero-shot.png", "confusion_lora.png"}


# -- the browser ------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def _driver():  # noqa: ANN202 - selenium types
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp(prefix='peftlab-chromium-')}",
                 "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


needs_browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                   reason="chromium / chromedriver not installed (scripts/setup.sh installs them)")


@pytest.fixture(scope="module")
def browser(report_store: dict):  # noqa: ANN201
    d = _driver()
    try:
        d.get(report_store["path"].as_uri())
        yield d
    finally:
        d.quit()


def _section_png(driver, element) -> bytes:  # noqa: ANN001
    """The whole element, also the part below the window (Chrome DevTools captureBeyondViewport)."""
    import base64

    x, y, w, h = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];", element)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1}})
    return base64.b64decode(shot["data"])


CENTER = "arguments[0].scrollIntoView({block: 'center'})"  # not under the sticky menu


def _shot_stats(png: bytes) -> tuple[float, float, int, set[tuple[int, int, int]]]:
    """(grey-level stddev, share of non-white pixels, height, colours) of a screenshot."""
    import io

    from PIL import Image, ImageStat

    im = Image.open(io.BytesIO(png)).convert("RGB")
    counts = im.getcolors(maxcolors=im.width * im.height) or []
    inked = sum(n for n, c in counts if min(c) < 240) / (im.width * im.height)
    return ImageStat.Stat(im.convert("L")).stddev[0], inked, im.height, {c for _, c in counts}


def _near(colors: set[tuple[int, int, int]], hex_color: str, tol: int = 12) -> bool:
    rgb = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return any(all(abs(c[i] - rgb[i]) <= tol for i in range(3)) for c in colors)


@needs_shared
@needs_browser
def test_browser_renders_every_section_without_console_errors(report_store: dict, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    shots = tmp_path / "shots"
    shots.mkdir()
    data = report_store["res"].data
    keep = os.environ.get("PEFTLAB_REPORT_SHOTS")  # a folder to keep the screenshots in, for a person
    browser.execute_script("window.scrollTo(0, 0)")
    for sid in SECTION_IDS:
        png = _section_png(browser, browser.find_element(By.ID, sid))
        (shots / f"{sid}.png").write_bytes(png)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / f"{sid}.png").write_bytes(png)
        std, inked, height, colors = _shot_stats(png)
        assert height > 60 and std > 5 and inked > 0.01, f"section {sid} looks blank ({std=:.1f}, {inked=:.3f})"
        if sid in ("curves", "pareto"):
            # The runs' colours are really drawn (SVG rendered, not just present in the source).
            drawn = [v for v in data.runs if v.done and v.trains] if sid == "curves" else \
                [v for v in data.runs if v.done]
            for v in drawn:
                assert _near(colors, v.color), f"{v.label}'s colour {v.color} not visible in {sid}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


@needs_shared
@needs_browser
def test_browser_sorting_toggles_and_filters_work(report_store: dict, browser) -> None:
    from selenium.webdriver.common.by import By

    data = report_store["res"].data

    def first_column(table_id: str, col: int) -> list[str]:
        return browser.execute_script(
            f"return Array.from(document.querySelectorAll('#{table_id} tbody tr'))"
            f".map(r => r.cells[{col}].getAttribute('data-v'));")

    # Sort the leaderboard by train time (click twice: descending), missing values last.
    headers = browser.find_elements(By.CSS_SELECTOR, "#leaderboard-table thead th")
    col = next(i for i, h in enumerate(headers) if h.text.startswith("train time (s)"))
    browser.execute_script(CENTER, headers[col])
    headers[col].click()
    asc = [float(x) for x in first_column("leaderboard-table", col) if x]
    assert asc == sorted(asc) and len(asc) >= 3
    headers[col].click()
    vals = first_column("leaderboard-table", col)
    desc = [float(x) for x in vals if x]
    assert desc == sorted(desc, reverse=True)
    assert all(x == "" for x in vals[len(desc):])  # runs without a value stay at the bottom

    # Hide one run: all its marks disappear from every chart, then come back.
    lora = next(v for v in data.runs if v.label == "lora")
    box = browser.find_element(By.CSS_SELECTOR, f'#curves input.toggle[data-series="{lora.index}"]')
    browser.execute_script(CENTER, box)
    box.click()
    hidden = browser.execute_script(
        f"return Array.from(document.querySelectorAll('.series[data-series=\"{lora.index}\"]'))"
        ".map(g => getComputedStyle(g).display);")
    assert hidden and set(hidden) == {"none"}
    synced = browser.find_element(By.CSS_SELECTOR, f'#pareto input.toggle[data-series="{lora.index}"]')
    assert not synced.is_selected()  # the same run's toggle in the other section follows
    box.click()
    shown = browser.execute_script(
        f"return Array.from(document.querySelectorAll('.series[data-series=\"{lora.index}\"]'))"
        ".map(g => getComputedStyle(g).display);")
    assert "none" not in shown

    # Only rows where the runs disagree.
    total = len(browser.find_elements(By.CSS_SELECTOR, "#outputs-table tbody tr"))
    n_dis = len(browser.find_elements(By.CSS_SELECTOR, "#outputs-table tbody tr.disagree"))
    f = browser.find_element(By.CSS_SELECTOR, 'input.ofilter[value="disagree"]')
    browser.execute_script(CENTER, f)
    f.click()
    visible = browser.execute_script(
        "return Array.from(document.querySelectorAll('#outputs-table tbody tr'))"
        ".filter(r => getComputedStyle(r).display !== 'none').length;")
    assert visible == n_dis <= total
    f.click()
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_report_module_states_its_metric_libraries() -> None:
    """Each metric says which library and settings produce it (in code, where it is computed)."""
    import peftlab.evaluate.bertscore as bs

    doc = bs.__doc__ or ""
    assert "bert-score" in doc and "num_layers" in doc and "rescale_with_baseline=False" in doc
    assert bs.METRIC_KEYS == ("bertscore_precision", "bertscore_recall", "bertscore_f1")
