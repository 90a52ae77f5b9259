"""The command line end to end on stories260k: run, skip done runs, leaderboard formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import needs_shared, tiny_causal, write_experiment

from peftlab.cli import main

pytestmark = needs_shared

REQUIRED = ["method", "status", "trainable_params", "trainable_percent", "peak_memory_mb", "train_seconds",
            "eval_seconds", "train_tokens_per_second", "adapter_bytes", "rouge1", "rouge2", "rougeL", "bleu",
            "eval_loss"]


def test_run_then_leaderboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = write_experiment(tmp_path, tiny_causal(["zero-shot", "lora", "ia3"], eval_every=3))
    store = str(tmp_path / "store")
    assert main(["--store", store, "run", str(exp), "--in-process"]) == 0
    out = capsys.readouterr().out
    assert "zero-shot" in out and "lora" in out and "ranked by rougeL" in out

    assert main(["--store", store, "leaderboard", "tiny", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["done"] * 3
    for r in rows:
        missing = [k for k in REQUIRED if k not in r]
        assert not missing, missing
    ranked = [r["rougeL"] for r in rows]
    assert ranked == sorted(ranked, reverse=True)
    by = {r["method"]: r for r in rows}
    assert by["zero-shot"]["trainable_params"] == 0
    assert 0 < by["ia3"]["trainable_params"] < by["lora"]["trainable_params"]
    assert by["lora"]["train_tokens_per_second"] > 0 and by["lora"]["peak_memory_mb"] > 50

    assert main(["--store", store, "leaderboard", "tiny", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["run"] for r in table} == {"zero-shot", "lora", "ia3"}

    # Curves: train loss, eval loss and the validation main metric over steps.
    assert main(["--store", store, "show", "tiny", "lora"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {"train_loss", "eval_loss", "val_rougeL", "learning_rate"} <= set(shown["curves"])
    assert shown["resolved"]["learning_rate"] == 2e-4
    assert shown["resolved"]["peft_config"]["r"] == 16
    assert shown["info"]["versions"]["peft"].startswith("0.21")

    # Re-running skips what is done; --methods picks runs; --force redoes them.
    assert main(["--store", store, "run", str(exp), "--in-process"]) == 0
    assert capsys.readouterr().out.count("already done, skipped") == 3
    assert main(["--store", store, "run", str(exp), "--in-process", "--methods", "ia3", "--force"]) == 0
    out = capsys.readouterr().out
    assert "ia3: running" in out and "lora" not in out.split("\n\n")[0]


def test_changed_config_replaces_results_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from peftlab.store import Store

    exp = write_experiment(tmp_path, tiny_causal(["lora"]))
    store = str(tmp_path / "store")
    assert main(["--store", store, "run", str(exp), "--in-process"]) == 0
    before = Store(store).find_run("tiny", "lora")
    capsys.readouterr()
    # another file with the same `name:` (or this one changed): refused, nothing lost
    other = write_experiment(tmp_path, tiny_causal(["lora"], max_steps=3), name="other.yaml")
    assert main(["--store", store, "run", str(other), "--in-process"]) == 2
    err = capsys.readouterr().err
    assert "already has finished runs with other settings" in err and "lora" in err and "--replace" in err
    kept = Store(store).find_run("tiny", "lora")
    assert kept.metrics == before.metrics and Store(store).curves(kept.id) == Store(store).curves(before.id)
    assert main(["--store", store, "run", str(other), "--in-process", "--replace"]) == 0
    out = capsys.readouterr().out
    assert "lora: running" in out and "skipped" not in out


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", str(tmp_path / "s"), "leaderboard", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    exp = write_experiment(tmp_path, tiny_causal(["lora"]))
    assert main(["--store", str(tmp_path / "s"), "run", str(exp), "--methods", "lorra"]) == 2
    assert "neither a run in this experiment" in capsys.readouterr().err


def test_changed_config_never_resumes_old_checkpoints(tmp_path: Path) -> None:
    from peftlab.store import Store
    from peftlab.train.runner import plan, queue_run

    exp = write_experiment(tmp_path, tiny_causal(["lora"]))
    store = Store(tmp_path / "store")
    p = plan(exp)
    store.save_experiment("tiny", "causal-lm", "stories260k", p.cfg.model_dump(mode="json"), None, None)
    run, reset = queue_run(p, store, p.cfg.methods[0])
    assert reset
    ckpt = store.run_dir("tiny", "lora") / "checkpoints" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    assert queue_run(p, store, p.cfg.methods[0]) == (store.run(run.id), False)  # same config: kept
    assert ckpt.is_dir()
    changed = plan(exp, {"training.max_steps": 3})
    _, reset = queue_run(changed, store, changed.cfg.methods[0])
    assert reset and not ckpt.exists()


def test_run_exits_1_when_a_run_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = write_experiment(tmp_path, tiny_causal(["zero-shot", {"name": "lora", "label": "hot", "learning_rate": 1e30}]))
    assert main(["--store", str(tmp_path / "store"), "run", str(exp), "--in-process"]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 runs failed or diverged: hot diverged" in err
