"""Forgetting (issue 29): on stories260k, a run overfit on one narrow repeated text forgets measurably
more than one trained a few steps; the zero-shot row's forgetting is 0 by construction, and the base
losses of the reference set are the zero-shot model's own; every run of a base shares one reference
set; `evaluation.forgetting: false` switches it off without changing a run's hash; a bad reference
file fails in preflight naming its line; `--max-forgetting` caps the recommendation; classification
rows say n/a."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import STORIES, needs_shared, tiny_causal, write_experiment

from peftlab.config.schema import ExperimentConfig
from peftlab.errors import ConfigError
from peftlab.report import forgetting as report_forgetting
from peftlab.report.board_text import render
from peftlab.report.collect import ReportData
from peftlab.report.leaderboard import rows
from peftlab.report.recommend import Budget, recommend
from peftlab.store import Store
from peftlab.train.runner import config_hash, plan, run_experiment

NARROW = {"table": "apples", "title": "the red apple fell on the red apple tree"}


def _narrow_data(tmp: Path) -> dict:
    """One text, repeated: what a run can only overfit."""
    f = tmp / "narrow.jsonl"
    f.write_text("".join(json.dumps(NARROW) + "\n" for _ in range(16)), encoding="utf-8")
    return {"train": str(f), "validation": str(f), "test": str(f), "prompt": "Table: {table}\nTitle:", "target": "title"}


def _experiment(tmp: Path, name: str, methods: list, **training: object) -> Path:
    body = tiny_causal(methods, threads=1, **training)
    body["name"] = name
    body["data"] = _narrow_data(tmp)
    return write_experiment(tmp, body, f"{name}.yaml")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    if not STORIES.is_dir():
        pytest.skip("../shared/models not present")
    tmp = tmp_path_factory.mktemp("forgetting")
    s = Store(tmp / "store")
    for path in (_experiment(tmp, "few", ["zero-shot", {"name": "lora", "learning_rate": 1e-3}], max_steps=2),
                 _experiment(tmp, "overfit", [{"name": "lora", "learning_rate": 0.05}], max_steps=60)):
        runs = run_experiment(plan(path), s, isolation="inprocess", echo=lambda *_: None)
        assert all(r.status == "done" for r in runs), [r.error for r in runs]
    return s


@needs_shared
def test_overfit_run_forgets_more_than_a_few_steps(store: Store) -> None:
    few = next(r for r in rows(store, "few") if r["run"] == "lora")
    over = next(r for r in rows(store, "overfit") if r["run"] == "lora")
    assert few["forgetting_n"] == over["forgetting_n"] == 64
    assert few["forgetting_reference"] == over["forgetting_reference"]  # one set for every run of the base
    assert len(list((store.root / "cache" / "forgetting").glob("*.json"))) == 1
    # measurably more: the overfit run's interval lies wholly above the few-step run's
    assert over["forgetting_ci_low"] > few["forgetting_ci_high"], (few, over)
    assert over["forgetting"] > few["forgetting"] + 0.1


@needs_shared
def test_zero_shot_forgetting_is_zero_and_the_base_losses_are_its_own(store: Store) -> None:
    zs = next(r for r in rows(store, "few") if r["run"] == "zero-shot")
    assert zs["forgetting"] == zs["forgetting_ci_low"] == zs["forgetting_ci_high"] == 0.0
    run = store.find_run("few", "zero-shot")
    assert run is not None and run.metrics["forgetting"] == 0.0
    # the base losses the set holds are what the zero-shot model (the base, as a run loads it) gives
    from peftlab.evaluate.reference import example_nll
    from peftlab.models import load_model, resolve_model
    from peftlab.tasks.build import load_task

    cfg = ExperimentConfig.model_validate(run.config["experiment"])
    rm = resolve_model(cfg.model)
    task = load_task(cfg, rm, None, "fp32")
    model = load_model(rm, cfg.model, cfg.task)
    task.prepare_model(model)
    ref = json.loads(next((store.root / "cache" / "forgetting").glob("*.json")).read_text(encoding="utf-8"))
    items = ref["items"][:8]
    again = example_nll(model, task, items)
    assert again == pytest.approx([it["base_nll"] for it in items], abs=1e-5)
    assert all(it["sampled"] and it["completion_ids"] for it in ref["items"])  # the base's own continuations
    from peftlab.evaluate.reference import shared_path

    assert json.loads(shared_path(ref["key"]).read_text(encoding="utf-8")) == ref  # the machine's copy, for other stores
    text = render(rows(store, "few"))
    assert "forgetting [95% CI]" in text and "0.000 [0.000, 0.000]" in text


@needs_shared
def test_the_cli_leaderboard_shows_forgetting_and_takes_the_cap(store: Store, capsys: pytest.CaptureFixture) -> None:
    from peftlab.cli import main

    assert main(["--store", str(store.root), "leaderboard", "few", "--format", "json"]) == 0
    got = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert got["zero-shot"]["forgetting"] == 0.0 and got["lora"]["forgetting_ci_high"] > 0.0
    assert main(["--store", str(store.root), "leaderboard", "few", "--max-forgetting", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "forgetting [95% CI]" in out and "within your budget (forgetting ≤ 0.001 nats/token)" in out


@needs_shared
def test_making_the_reference_set_leaves_the_run_as_it_would_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """The first run of a base makes the set (sampling, on its own random state); the next, in another
    store, takes the machine's copy: both train and score the same, to the digit."""
    monkeypatch.setenv("PEFTLAB_CACHE_DIR", str(tmp_path / "cache"))
    body = tiny_causal([{"name": "lora", "learning_rate": 0.01}], threads=1, max_steps=3)
    got = []
    for name in ("makes", "takes"):
        s = Store(tmp_path / name)
        [run] = run_experiment(plan(write_experiment(tmp_path, body)), s, isolation="inprocess", echo=lambda *_: None)
        made = json.loads(next((s.root / "cache" / "forgetting").glob("*.json")).read_text(encoding="utf-8"))
        got.append((run.metrics, made["made_at"]))
    assert got[0] == got[1]


def test_default_forgetting_keeps_existing_hashes(tmp_path: Path) -> None:
    """Runs of stores made before forgetting keep their hash: the key counts only off its default."""
    cfg = ExperimentConfig.model_validate(tiny_causal(["lora"]))
    entry = cfg.methods[0]
    off = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"forgetting": False})})
    assert config_hash(cfg, entry) != config_hash(off, entry)
    import hashlib

    body = cfg.model_dump(mode="json", exclude={"methods", "tuning", "seeds", "resources"})
    for section, key in (("data", "format"), ("data", "as_chat"), ("training", "devices"), ("training", "strategy"),
                         ("evaluation", "precision"), ("evaluation", "forgetting")):
        del body[section][key]
    blob = json.dumps({"experiment": body, "entry": entry.model_dump(mode="json", exclude={"search"})}, sort_keys=True)
    assert config_hash(cfg, entry) == hashlib.sha256(blob.encode()).hexdigest()[:16]


@needs_shared
@pytest.mark.parametrize(("name", "content", "said"), [
    ("bad.jsonl", '{"text": "a fine line"}\n{"title": 3}\n', "bad.jsonl:2: a reference row with keys (title)"),
    ("broken.jsonl", '{"text": "a fine line"}\n{"text": \n', "broken.jsonl:2"),
    ("empty.txt", "\n\n", "empty.txt: no text in the file"),
])
def test_a_bad_reference_file_fails_in_preflight_naming_its_line(tmp_path: Path, name: str, content: str,
                                                                 said: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    body = tiny_causal(["zero-shot"])
    body["evaluation"]["forgetting"] = str(tmp_path / name)
    path = write_experiment(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        run_experiment(plan(path), Store(tmp_path / "store"), isolation="inprocess", echo=lambda *_: None)
    msg = str(e.value)
    assert msg.startswith(f"{path}:") and "evaluation.forgetting" in msg and said in msg, msg
    assert 'each row needs "text"' in msg
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


@needs_shared
def test_a_named_reference_file_and_forgetting_off(tmp_path: Path) -> None:
    """Texts scored as they are, prompts with completions, prompts the base continues; and `false`."""
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps(r) + "\n" for r in (
        {"text": "Once upon a time there was a little cat."}, {"prompt": "Tom went to the park.",
                                                                "completion": " He saw a big dog."},
        {"prompt": "Lily had a red ball."})), encoding="utf-8")
    body = tiny_causal(["zero-shot"], threads=1)
    body["evaluation"]["forgetting"] = str(ref)
    store = Store(tmp_path / "store")
    run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    run = store.find_run("tiny", "zero-shot")
    assert run is not None and run.info["forgetting"]["n"] == 3 and run.info["forgetting"]["source"] == str(ref)
    cached = json.loads(next((store.root / "cache" / "forgetting").glob("*.json")).read_text(encoding="utf-8"))
    assert [bool(it.get("sampled")) for it in cached["items"]] == [False, False, True]
    body["name"], body["evaluation"]["forgetting"] = "off", False
    run_experiment(plan(write_experiment(tmp_path, body, "off.yaml")), store, isolation="inprocess",
                   echo=lambda *_: None)
    off = store.find_run("off", "zero-shot")
    assert off is not None and "forgetting" not in off.metrics and "forgetting" not in off.info
    assert "forgetting" not in render(rows(store, "off"))


@needs_shared
def test_seq2seq_runs_measure_forgetting_too(tmp_path: Path, tiny_t5: Path) -> None:
    """An encoder-decoder: the general prompts are its encoder inputs, the base's sampled decoder
    outputs the reference."""
    body = tiny_causal(["zero-shot", {"name": "lora", "learning_rate": 0.01}], threads=1, max_steps=3)
    body.update(name="t5", model=str(tiny_t5), task="seq2seq")
    store = Store(tmp_path / "store")
    runs = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert all(r.status == "done" for r in runs), [r.error for r in runs]
    by = {r["run"]: r for r in rows(store, "t5")}
    assert by["zero-shot"]["forgetting"] == 0.0 and by["lora"]["forgetting_n"] == 64
    assert by["lora"]["forgetting"] > 0.0 and by["lora"]["forgetting_ci_low"] <= by["lora"]["forgetting_ci_high"]


def _row(run: str, forgetting: float, params: int, rank: int) -> dict:
    return {"run": run, "method": run, "status": "done", "rank": rank, "rank_group": 1, "rougeL": 40.0 - rank,
            "beats_floor": True, "floor": "zero-shot", "p_vs_floor": 0.001, "trains": True, "seeds": [],
            "trainable_params": params, "trainable_percent": 1.0, "forgetting": forgetting,
            "forgetting_ci_low": forgetting - 0.05, "forgetting_ci_high": forgetting + 0.05}


def test_max_forgetting_drops_a_method_over_the_cap_from_the_recommendation() -> None:
    data = ReportData("e", [], [], "rougeL", ["causal-lm"],
                      rows=[_row("lora", 0.9, 1000, 1), _row("ia3", 0.1, 5000, 2)])
    assert recommend(data).run == "lora"  # the cheapest of the tied rows
    rec = recommend(data, Budget(max_forgetting=0.5))
    assert rec.run == "ia3"
    assert [(r["run"], why) for r, why in rec.over_budget] == [("lora", "forgetting 0.900 > 0.5 nats/token")]
    assert "forgetting ≤ 0.5 nats/token" in rec.headline and "lora" in rec.text
    none = recommend(data, Budget(max_forgetting=0.05))
    assert none.run is None and "No recommendation within your budget" in none.headline


def test_classification_rows_say_forgetting_is_not_measured() -> None:
    r: dict = {"run": "lora", "method": "lora", "status": "done", "rank": 1, "main_metric": "accuracy",
               "accuracy": 80.0}
    report_forgetting.annotate(r, [], generative=False)
    assert r["forgetting"] is None and "head is new" in r["forgetting_na"]
    assert report_forgetting.text(r) == "n/a" and " n/a " in render([r])
    assert Budget(max_forgetting=0.1).over(r) == []  # the cap does not apply where nothing is measured


def _seed_run(tmp: Path, name: str, diffs: list[float]) -> object:
    from peftlab.store.runs import Run

    (tmp / f"{name}.jsonl").write_text("".join(json.dumps({"diff": d}) + "\n" for d in diffs), encoding="utf-8")
    mean = sum(diffs) / len(diffs)
    info = {"forgetting": {"mean": mean, "ci_low": mean, "ci_high": mean, "n": len(diffs), "reference": "k"},
            "forgetting_examples": f"{name}.jsonl"}
    return Run(1, "e", name, "lora", "done", "h", {}, None, {"forgetting": mean}, None, info, None, None, None, None,
               None, None, 0.0, None, None, root=tmp)


def test_a_row_over_seeds_gets_the_two_level_interval(tmp_path: Path) -> None:
    a = _seed_run(tmp_path, "lora.s1", [0.1, 0.3, 0.2, 0.4, 0.2, 0.3])
    b = _seed_run(tmp_path, "lora.s2", [0.5, 0.7, 0.6, 0.4, 0.6, 0.5])
    r: dict = {}
    report_forgetting.annotate(r, [a, b], generative=True)
    assert r["forgetting"] == pytest.approx(0.4) and r["forgetting_n"] == 6 and r["forgetting_reference"] == "k"
    assert r["forgetting_ci_low"] < 0.4 < r["forgetting_ci_high"]
