"""`peftlab predict` and `peftlab evaluate` on files a finished run never saw (stories260k,
statista): outputs equal the run's own test outputs for the same inputs, every input column kept,
targets optional, bad rows and foreign formats named; an evaluation recorded under the run
(files, info, 95% intervals, `peftlab show`) that reproduces the run's test metrics on its own
test rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, needs_shared, tiny_causal, write_experiment

from peftlab.cli import main
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared
PROMPT = "Table: {table}\nTitle:"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Any, list[dict[str, Any]]]:
    """A lora and a zero-shot run, and the rows of their test file they were scored on."""
    tmp = tmp_path_factory.mktemp("predict")
    p = plan(write_experiment(tmp, tiny_causal(["zero-shot", "lora"])))
    store = Store(tmp / "store")
    runs = run_experiment(p, store, isolation="inprocess", echo=lambda *_: None)
    assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
    lora = store.find_run("tiny", "lora")
    scored = {x["input"] for x in _jsonl(lora.file("predictions"))}
    test_rows = _jsonl(DATA / "statista" / "test.jsonl")
    return store, lora, [r for r in test_rows if PROMPT.format(table=r["table"]) in scored]


def _args(store: Store) -> list[str]:
    return ["--store", str(store.root)]


def test_predict_without_targets_keeps_every_column(trained: tuple[Store, Any, list[dict[str, Any]]],
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, lora, rows = trained
    assert len(rows) == 8
    new = [{"id": r["id"], "table": r["table"], "source": "crawl", "n": i} for i, r in enumerate(rows)]  # no title
    src, out = _write(tmp_path / "new.jsonl", new), tmp_path / "out.jsonl"
    assert main(["predict", "tiny", "lora", "--input", str(src), "--output", str(out), *_args(store)]) == 0
    assert "lora: 8 rows in " in capsys.readouterr().out
    got = _jsonl(out)
    assert [{k: v for k, v in g.items() if k not in ("output", "stopped")} for g in got] == new
    # The run's own formatter and generation settings: the outputs of its test evaluation.
    by_input = {x["input"]: x["output"] for x in _jsonl(lora.file("predictions"))}
    assert [g["output"] for g in got] == [by_input[PROMPT.format(table=r["table"])] for r in rows]
    assert all(isinstance(g["stopped"], bool) for g in got)
    # Every done run (or --runs a,b): one file per run beside --output.
    assert main(["predict", "tiny", "--input", str(src), "--output", str(out), *_args(store)]) == 0
    assert len(_jsonl(tmp_path / "out.zero-shot.jsonl")) == len(_jsonl(tmp_path / "out.lora.jsonl")) == 8
    csv_out = tmp_path / "out.csv"
    assert main(["predict", "tiny", "--runs", "lora", "--input", str(src), "--output", str(csv_out),
                 *_args(store)]) == 0
    assert csv_out.read_text(encoding="utf-8").splitlines()[0] == "id,table,source,n,output,stopped"


def test_predict_bad_rows_and_foreign_formats(trained: tuple[Store, Any, list[dict[str, Any]]], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    store, _, rows = trained
    src = _write(tmp_path / "bad.jsonl", [{"table": rows[0]["table"]}, {"table": None}, {"table": rows[1]["table"]}])
    out = tmp_path / "out.jsonl"
    assert main(["predict", "tiny", "lora", "--input", str(src), "--output", str(out), *_args(store)]) == 2
    assert f"{src}:2: input column(s) ['table'] empty or missing (fix the row, or set data.on_bad_rows: skip)" in \
        capsys.readouterr().err
    assert main(["predict", "tiny", "lora", "--input", str(src), "--output", str(out), "--on-bad-rows", "skip",
                 *_args(store)]) == 0
    assert f"warning: 1 bad rows skipped (on_bad_rows: skip), e.g. {src}:2: input column(s)" in capsys.readouterr().err
    assert len(_jsonl(out)) == 2
    chat = _write(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    assert main(["predict", "tiny", "lora", "--input", str(chat), "--output", str(out), *_args(store)]) == 2
    err = capsys.readouterr().err
    assert "column 'table' (from data.prompt) not found" in err
    assert "The file looks like messages data" in err and "the run was trained on columns" in err


def test_evaluate_records_an_evaluation_under_the_run(trained: tuple[Store, Any, list[dict[str, Any]]],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, lora, rows = trained
    seen = {r["id"] for r in rows}
    unseen = [r for r in _jsonl(DATA / "statista" / "test.jsonl") if r["id"] not in seen][:10]
    held = _write(tmp_path / "held-out.jsonl", unseen)
    assert main(["evaluate", "tiny", "lora", "--test", str(held), *_args(store)]) == 0
    out = capsys.readouterr().out
    assert "lora: evaluation 'file-held-out', 10 examples" in out and "rougeL" in out and "95% CI" in out
    rec = store.find_run("tiny", "lora").info["evaluations"]["file-held-out"]
    folder = store.run_dir("tiny", "lora") / "evaluations" / "file-held-out"
    assert rec["predictions"] == "runs/tiny/lora/evaluations/file-held-out/predictions.jsonl"
    assert len(_jsonl(folder / "predictions.jsonl")) == len(_jsonl(folder / "scores.jsonl")) == 10
    assert json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["metrics"] == rec["metrics"]
    assert rec["examples"] == 10 and rec["main_metric"] == "rougeL" and rec["format"] == "columns"
    iv = rec["intervals"]["rougeL"]
    assert iv["low"] <= iv["value"] <= iv["high"] and iv["value"] == pytest.approx(rec["metrics"]["rougeL"])
    assert {"rouge1", "rouge2", "bleu"} <= set(rec["intervals"]) and rec["metrics"]["eval_loss"] > 0
    assert [p["reference"] for p in _jsonl(folder / "predictions.jsonl")] == [r["title"] for r in unseen]
    # On the run's own test rows it reproduces the run's test evaluation.
    own = _write(tmp_path / "own.jsonl", rows)
    assert main(["evaluate", "tiny", "lora", "--test", str(own), "--name", "own-test", *_args(store)]) == 0
    capsys.readouterr()
    run = store.find_run("tiny", "lora")
    again = run.info["evaluations"]["own-test"]["metrics"]
    assert again["rougeL"] == pytest.approx(run.metrics["rougeL"])
    assert again["eval_loss"] == pytest.approx(run.metrics["eval_loss"], rel=1e-4)
    assert set(run.info["evaluations"]) == {"file-held-out", "own-test"}  # both kept
    assert main(["show", "tiny", "lora", *_args(store)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown["evaluations"]) == {"file-held-out", "own-test"} and "evaluations" not in shown["info"]
    # a file named after a split is never recorded under the split's name, nor can --name say it
    assert main(["evaluate", "tiny", "lora", "--test", str(own), "--name", "test", *_args(store)]) == 2
    assert "would read as the run's own test split" in capsys.readouterr().err
    # The report shows them beside the run's own test evaluation.
    from peftlab.report.html import ReportOptions, build_report

    res = build_report(store, ["tiny"], tmp_path / "report.html", options=ReportOptions(bertscore=False))
    page = res.path.read_text(encoding="utf-8")
    section = page[page.index('<section id="evaluations">'):]
    section = section[: section.index("</section>")]
    assert "held-out" in section and "own-test" in section and "test rougeL [95% CI]" in section
    # Files without targets, and bad names, are refused.
    nolabel = _write(tmp_path / "nolabel.jsonl", [{"table": r["table"]} for r in rows])
    assert main(["evaluate", "tiny", "lora", "--test", str(nolabel), *_args(store)]) == 2
    assert "column 'title' (from data.target) not found" in capsys.readouterr().err
    assert main(["evaluate", "tiny", "lora", "--test", str(own), "--name", "../x", *_args(store)]) == 2
    assert "--name '../x': use letters" in capsys.readouterr().err


def test_evaluate_takes_final_runs_unless_a_trial_is_named(tmp_path: Path) -> None:
    import argparse

    from peftlab.cli.commands import _chosen_runs

    store = Store(tmp_path / "s")
    store.save_experiment("t", "causal-lm", "m", {}, None, None)
    for name, cfg in (("lora", {"variant": "lora"}), ("lora.t0", {"role": "trial", "variant": "lora"})):
        run, _ = store.upsert_run("t", name, "lora", name, cfg)
        store.finish(run.id, "done", metrics={"rougeL": 1.0})
    ns = argparse.Namespace(experiment="t", run=None, runs=None)
    assert [r.name for r in _chosen_runs(store, ns)] == ["lora"]
    assert [r.name for r in _chosen_runs(store, argparse.Namespace(experiment="t", run="lora.t0", runs=None))] == \
        ["lora.t0"]
