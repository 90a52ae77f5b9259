"""`peftlab evaluate EXP RUN --lm-eval TASKS` (issue 29): lm-evaluation-harness scores a run on a
local multiple-choice task and a local generation task; the scores recorded under the run are
lm-eval's own (its command line, run separately on the same adapter), printed beside the
zero-shot row's; what cannot be scored is refused in words."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DATA, MINILM, STORIES, needs_shared, tiny_causal, write_experiment

from peftlab.cli import main
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared
pytest.importorskip("lm_eval")


def _tasks(folder: Path) -> Path:
    """Two task files on 10 statista rows: multiple choice (a table's own title among three others)
    and generation (the title, greedy, exact match)."""
    folder.mkdir()
    with open(DATA / "statista" / "test.jsonl", encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(10)]
    docs = [{"question": f"Table: {r['table'][:80]}\nTitle:", "title": r["title"][:60],
             "choices": [" " + rows[(i + k) % 10]["title"][:60] for k in range(4)], "answer": 0}
            for i, r in enumerate(rows)]
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    common = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test",
              "doc_to_text": "{{question}}"}
    (folder / "mc.yaml").write_text(yaml.safe_dump({
        "task": "peftlab_mc", **common, "output_type": "multiple_choice", "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}", "metric_list": [{"metric": "acc", "aggregation": "mean",
                                                         "higher_is_better": True}]}), encoding="utf-8")
    (folder / "gen.yaml").write_text(yaml.safe_dump({
        "task": "peftlab_gen", **common, "output_type": "generate_until", "doc_to_target": " {{title}}",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 8, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": True}]}), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    tmp = tmp_path_factory.mktemp("harness")
    store = Store(tmp / "store")
    runs = run_experiment(plan(write_experiment(tmp, tiny_causal(["zero-shot", {"name": "lora", "learning_rate": 0.01}],
                                                                 max_steps=4, threads=1))),
                          store, isolation="inprocess", echo=lambda *_: None)
    assert all(r.status == "done" for r in runs), [r.error for r in runs]
    return store, _tasks(tmp / "tasks")


def _lm_eval_cli(tmp: Path, args: str, include: Path) -> dict:
    """lm-eval's own command line on the same model: its results file."""
    out = tmp / "lm-eval-out"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", args, "--tasks", "peftlab_mc,peftlab_gen",
           "--include_path", str(include), "--batch_size", "1", "--device", "cpu", "--output_path", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    [path] = glob.glob(str(out / "**" / "results_*.json"), recursive=True)
    return json.loads(Path(path).read_text(encoding="utf-8"))["results"]


def test_scores_are_lm_evals_own_and_sit_beside_zero_shot(trained: tuple[Store, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    store, include = trained
    for run in ("zero-shot", "lora"):
        assert main(["--store", str(store.root), "evaluate", "tiny", run, "--lm-eval", "peftlab_mc,peftlab_gen",
                     "--lm-eval-include", str(include), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    lora = store.find_run("tiny", "lora")
    evals = lora.info["evaluations"]
    assert set(evals) == {"lm-eval/peftlab_mc", "lm-eval/peftlab_gen"}
    assert evals["lm-eval/peftlab_mc"]["samples"] == 10 and evals["lm-eval/peftlab_mc"]["model_args"]["peft"]
    own = _lm_eval_cli(tmp_path, f"pretrained={STORIES},peft={lora.file('artifact')},dtype=float32", include)
    for task, metric in (("peftlab_mc", "acc"), ("peftlab_gen", "exact_match")):
        rec = evals[f"lm-eval/{task}"]
        assert rec["metrics"][metric] == pytest.approx(own[task][f"{metric},none"], abs=1e-9), task
        assert rec["stderr"][metric] == pytest.approx(own[task][f"{metric}_stderr,none"], abs=1e-9), task
    zero = store.find_run("tiny", "zero-shot").info["evaluations"]["lm-eval/peftlab_mc"]["metrics"]["acc"]
    mc = evals["lm-eval/peftlab_mc"]["metrics"]["acc"]
    assert f"zero-shot {zero:.4f}, {mc - zero:+.4f}" in printed  # the delta, on the lora lines


def test_what_lm_eval_cannot_score_is_refused_in_words(trained: tuple[Store, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    store, include = trained
    assert main(["--store", str(store.root), "evaluate", "tiny", "lora", "--lm-eval", "no_such_task",
                 "--lm-eval-include", str(include)]) != 0
    assert "lm-eval knows no task 'no_such_task'" in capsys.readouterr().err
    assert main(["--store", str(store.root), "evaluate", "tiny", "lora"]) != 0
    assert "give --test FILE" in capsys.readouterr().err
    cls = {"name": "cls", "model": str(MINILM), "task": "classification",
           "data": {"train": str(DATA / "financial_phrasebank" / "train.jsonl"),
                    "test": str(DATA / "financial_phrasebank" / "test.jsonl"), "input": "text", "label": "label",
                    "max_train_examples": 64, "max_test_examples": 4},
           "methods": ["zero-shot"], "training": {"max_steps": 1, "batch_size": 8, "precision": "fp32"}}
    run_experiment(plan(write_experiment(tmp_path, cls)), store, isolation="inprocess", echo=lambda *_: None)
    assert main(["--store", str(store.root), "evaluate", "cls", "zero-shot", "--lm-eval", "peftlab_mc",
                 "--lm-eval-include", str(include)]) != 0
    assert "lm-evaluation-harness scores language models" in capsys.readouterr().err
