"""Each run records what its times were measured under (issue 34): the CPU time of training and
evaluation, the load average around them, threads and CPUs, in its cost, shown by `peftlab show`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import needs_shared, tiny_causal, write_experiment

from peftlab.cli import main as cli_main
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


def test_a_run_records_cpu_time_and_load_and_show_prints_them(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    exp = write_experiment(tmp_path, tiny_causal([{"name": "zero-shot"}, {"name": "lora"}], threads=1,
                                                 eval_every=3))
    store = Store(tmp_path / "store")
    runs = {r.name: r for r in run_experiment(plan(exp), store, isolation="inprocess", echo=lambda *_: None)}
    lora, zero = runs["lora"].cost or {}, runs["zero-shot"].cost or {}
    assert runs["lora"].status == "done", runs["lora"].error
    # training took CPU time, at most what one thread can spend in its wall time (+ timer slack);
    # validation passes (eval_every) count in neither, as in train_seconds
    assert 0 < lora["train_cpu_seconds"] <= lora["train_seconds"] * 1 + 0.5
    assert lora["eval_cpu_seconds"] > 0
    assert lora["threads"] == 1 and lora["cpus"] == os.cpu_count() and lora["resumed"] is False
    assert set(lora["load_avg"]) == {"train_start", "train_end", "eval_end"}
    assert all(v >= 0 for v in lora["load_avg"].values())
    # a run that does not train records no training CPU time, and the load at its evaluation
    assert zero["train_cpu_seconds"] == 0 and set(zero["load_avg"]) == {"eval_end"} and zero["eval_cpu_seconds"] > 0

    capsys.readouterr()
    assert cli_main(["--store", str(tmp_path / "store"), "show", "tiny", "lora"]) == 0
    shown = json.loads(capsys.readouterr().out)["cost"]
    assert shown["train_cpu_seconds"] == lora["train_cpu_seconds"] and shown["load_avg"] == lora["load_avg"]


def test_cpu_seconds_leave_validation_out_and_survive_a_resume() -> None:
    """The counters a checkpoint keeps carry the CPU seconds, so a resumed run's cover the whole run."""
    from types import SimpleNamespace

    from peftlab.train.trainer import CountersCallback

    trainer = SimpleNamespace(validation_cpu_seconds=0.0, tokens_trained=0)
    cb = CountersCallback(trainer, {"seconds": 10.0, "tokens": 5, "cpu_seconds": 7.0})  # type: ignore[arg-type]
    cb.on_train_begin(None, None, None)
    end = time.process_time() + 0.05
    while time.process_time() < end:  # burn CPU
        pass
    spent = cb.cpu_seconds() - 7.0
    assert spent >= 0.04
    trainer.validation_cpu_seconds = spent  # all of it in validation: none of it is training
    assert cb.cpu_seconds() == pytest.approx(7.0, abs=0.02)
    assert cb.measured_under()["resumed"] is True
