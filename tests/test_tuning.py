"""Equal-budget tuning and seeds on a real tiny model (stories260k): trials are scored on the
validation split and never read the test split; every method gets the same trials and steps;
a study stopped mid-trial resumes to the same number of trials; bad setups are refused first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import DATA, needs_shared, tiny_causal, write_experiment

from peftlab.errors import ConfigError, DataError
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


def _body(tmp_path: Path, methods: list, **tuning: object) -> dict:
    body = tiny_causal(methods, max_steps=4)
    for split in ("train", "validation", "test"):  # a private copy: tests corrupt the test file
        dst = tmp_path / f"{split}.jsonl"
        shutil.copy(DATA / "statista" / f"{split}.jsonl", dst)
        body["data"][split] = str(dst)
    body["data"]["max_validation_examples"] = 12
    body["tuning"] = {"trials": 2, "steps_per_trial": 2, "seed": 3, **tuning}
    return body


def _studies(store: Store, exp: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in store.runs(exp):
        if (r.config or {}).get("role") == "trial":
            out.setdefault(r.config["variant"], []).append(r)
    return out


def test_tuning_never_reads_the_test_split(tmp_path: Path) -> None:
    body = _body(tmp_path, ["zero-shot", "lora", "ia3"])
    exp = write_experiment(tmp_path, body)
    Path(body["data"]["test"]).write_text('{"table": "x", "title": \n', encoding="utf-8")  # corrupt
    store = Store(tmp_path / "store")
    with pytest.raises(DataError, match="test.jsonl"):
        run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    studies = _studies(store, "tiny")
    assert set(studies) == {"lora", "ia3"}  # zero-shot trains nothing: not tuned
    for trials in studies.values():
        assert [t.status for t in trials] == ["done", "done"]  # tuning finished before the test split was read
        assert all(t.info["scored_split"] == "validation" and t.info["data"]["test"] == 0 for t in trials)
        assert all(t.info["data"]["validation"] == 12 for t in trials)
    assert not [r for r in store.runs("tiny") if (r.config or {}).get("role") != "trial"]  # no final run yet


def test_every_method_gets_the_same_budget_then_the_best_is_retrained(tmp_path: Path) -> None:
    body = _body(tmp_path, ["zero-shot", "lora", "prompt-tuning"])
    store = Store(tmp_path / "store")
    said: list[str] = []
    finals = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=said.append)
    studies = _studies(store, "tiny")
    assert {k: len(v) for k, v in studies.items()} == {"lora": 2, "prompt-tuning": 2}
    for trials in studies.values():
        assert [t.resolved["total_steps"] for t in trials] == [2, 2]
        assert len({t.info["data"]["train"] for t in trials}) == 1
    assert [r.name for r in finals] == ["zero-shot", "lora", "prompt-tuning"]
    for r in finals[1:]:
        assert r.status == "done" and r.resolved["total_steps"] == 4  # the full budget, on the test split
        assert r.info.get("scored_split") is None and r.info["data"]["test"] == 8
        best = max((t for t in studies[r.name]), key=lambda t: t.metrics["rougeL"])
        assert r.resolved["learning_rate"] == pytest.approx(best.config["trial"]["params"]["learning_rate"])
    assert any("best validation rougeL" in s for s in said)
    from peftlab.report.leaderboard import rows

    assert {x["run"] for x in rows(store, "tiny")} == {"zero-shot", "lora", "prompt-tuning"}  # trials apart
    from peftlab.report.html import ReportOptions, build_report

    res = build_report(store, ["tiny"], tmp_path / "r.html", options=ReportOptions(bertscore=False, png_dir=tmp_path / "png"))
    page = res.path.read_text(encoding="utf-8")
    assert 'id="tuning"' in page and "Expected best validation rougeL" in page and 'id="tuning-table"' in page
    assert {d.label for d in res.data.runs} == {"zero-shot", "lora", "prompt-tuning"}
    assert {p.name for p in res.pngs} >= {"budget_curves.png", "ranking.png"}


def test_a_study_stopped_mid_trial_resumes_to_the_same_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.train import runs as runner

    body = _body(tmp_path, ["lora"], trials=3)
    exp = write_experiment(tmp_path, body)
    store = Store(tmp_path / "store")
    real = runner._execute
    calls = {"n": 0}

    def stop_second(store_: Store, run_id: int, isolation: str) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            store_.mark_interrupted(run_id, "stopped for the test")
            raise KeyboardInterrupt
        return real(store_, run_id, isolation)

    monkeypatch.setattr(runner, "_execute", stop_second)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    monkeypatch.setattr(runner, "_execute", real)
    run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)
    trials = sorted(_studies(store, "tiny")["lora"], key=lambda r: r.name)
    assert [t.name for t in trials] == ["lora.t0", "lora.t1", "lora.t2"]  # the stopped trial re-ran as t1
    assert all(t.status == "done" for t in trials)
    lrs = [t.config["trial"]["params"]["learning_rate"] for t in trials]
    assert len(set(lrs)) == 3, f"the resumed study asked an earlier trial's configuration again: {lrs}"
    import optuna

    from peftlab.tune.study import storage

    [summary] = optuna.get_all_study_summaries(storage(store.root))
    study = optuna.load_study(study_name=summary.study_name, storage=storage(store.root))
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_seeds_train_each_final_run_per_seed_on_the_same_examples(tmp_path: Path) -> None:
    body = tiny_causal(["zero-shot", "lora"], max_steps=3)
    store = Store(tmp_path / "store")
    finals = run_experiment(plan(write_experiment(tmp_path, body), seeds=2), store, isolation="inprocess",
                            echo=lambda *_: None)
    assert [r.name for r in finals] == ["zero-shot", "lora.s42", "lora.s43"]
    a, b = (store.find_run("tiny", n) for n in ("lora.s42", "lora.s43"))
    assert a.resolved["experiment"]["training"]["seed"] == 42 and b.resolved["experiment"]["training"]["seed"] == 43
    import json

    inputs = [[json.loads(x)["input"] for x in r.file("predictions").read_text().splitlines()] for r in (a, b)]
    assert inputs[0] == inputs[1]  # one test set for every seed
    from peftlab.report.leaderboard import rows

    lora = next(x for x in rows(store, "tiny") if x["run"] == "lora")
    assert lora["n_seeds"] == 2 and lora["runs"] == ["lora.s42", "lora.s43"]


@pytest.mark.parametrize(("change", "says"), [
    ({"methods": [{"name": "lora", "search": {"r": []}}]}, r"methods\[0\].search.r = \[\]: needs at least 1 entry"),
    ({"methods": [{"name": "lora", "search": {"learning_rate": {"low": 1e-2, "high": 1e-4, "log": True}}}]},
     "is above high"),
    ({"methods": [{"name": "lora", "search": {"rank": [4, 8]}}]}, "search.rank: not a tunable key of lora. Did you mean 'r'"),
    ({"methods": ["zero-shot"]}, "none of the methods \\(zero-shot\\) trains"),
    ({"data_max_val": 4}, "needs at least 10"),
])
def test_bad_tuning_setups_are_refused_before_any_run(tmp_path: Path, change: dict, says: str) -> None:
    body = _body(tmp_path, ["lora"])
    if "data_max_val" in change:
        body["data"]["max_validation_examples"] = change["data_max_val"]
    else:
        body.update(change)
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match=says):
        run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert store.runs("tiny") == []


def test_seeds_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--seeds 0"):
        plan(write_experiment(tmp_path, tiny_causal(["lora"])), seeds=0)


def test_dry_run_shows_the_runs_and_their_cost(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from peftlab.cli import main

    body = _body(tmp_path, ["zero-shot", "lora", "ia3"], trials=3)
    exp = write_experiment(tmp_path, body)
    assert main(["--store", str(tmp_path / "store"), "run", str(exp), "--dry-run", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    # 2 trained methods x (3 trials + 2 seeds) + zero-shot once = 11 runs, and nothing ran
    assert "11 runs to make, about" in out and "nothing ran" in out and "done in this store" not in out
    assert Store(tmp_path / "store").runs() == []
