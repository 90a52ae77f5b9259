"""One run over several devices: a 2-process DDP run on CPU (gloo, launched by Accelerate) trains
on the same global batches as the 1-process run and logs the same losses; and what is refused
before any run starts (more devices than the machine has, CPU processes not asked for, a
strategy that does not fit the method, a batch that does not split)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import needs_shared, tiny_causal, write_experiment

from peftlab.errors import ConfigError
from peftlab.scale.devices import check_devices
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared
# fp32 on both sides; the two processes sum their losses and gradients in another order than
# one process does, so they may differ in the last bits
LOSS_TOLERANCE = 1e-4


def _body(devices: int, **training: object) -> dict:
    # dropout off: its masks are drawn per process, so with dropout the runs differ by design
    body = tiny_causal([{"name": "lora", "dropout": 0.0}], threads=1, devices=devices, strategy="ddp", **training)
    body["name"] = f"ddp-{devices}"
    return body


def test_two_process_ddp_run_matches_one_process(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    [one] = run_experiment(plan(write_experiment(tmp_path, _body(1), "one.yaml")), store, isolation="inprocess",
                           echo=lambda *_: None)
    [two] = run_experiment(plan(write_experiment(tmp_path, _body(2), "two.yaml")), store, echo=lambda *_: None)
    assert one.status == "done" and two.status == "done", (one.error, two.error)
    logs = [r["message"] for r in store.logs(two.id)]
    assert any("training over 2 processes" in m and "gloo" in m and "4 examples each" in m for m in logs), logs
    a, b = store.curves(one.id), store.curves(two.id)
    assert [s for s, _ in a["train_loss"]] == [s for s, _ in b["train_loss"]] == list(range(1, 7))
    worst = max(abs(x - y) for (_, x), (_, y) in zip(a["train_loss"], b["train_loss"], strict=True))
    print(f"DDP 2 processes vs 1: train losses {[round(v, 6) for _, v in b['train_loss']]}, max |diff| {worst:.2e}")
    assert worst <= LOSS_TOLERANCE
    assert abs(one.metrics["eval_loss"] - two.metrics["eval_loss"]) <= LOSS_TOLERANCE
    assert two.cost["train_tokens"] == one.cost["train_tokens"]  # every process' tokens counted once
    assert two.file("artifact").is_dir() and two.file("predictions").is_file()


def _refusal(tmp_path: Path, body: dict, gpus: int, cpus: int) -> str:
    with pytest.raises(ConfigError) as e:
        check_devices(plan(write_experiment(tmp_path, body)), gpus, cpus)
    return str(e.value)


def test_refused_before_any_run(tmp_path: Path) -> None:
    auto = tiny_causal(["lora"], devices=2)
    msg = _refusal(tmp_path, auto, gpus=0, cpus=2)  # CPU processes only when asked for
    assert "exp.yaml:" in msg and "has no GPU" in msg and "strategy: ddp" in msg
    assert "has 2 GPU(s)" in _refusal(tmp_path, tiny_causal(["lora"], devices=4), gpus=2, cpus=8)
    assert "has 2 cores" in _refusal(tmp_path, _body(4), gpus=0, cpus=2)
    qlora = tiny_causal(["qlora"], devices=2, strategy="fsdp")
    assert "4-bit base" in _refusal(tmp_path, qlora, gpus=2, cpus=8)
    assert "needs GPUs" in _refusal(tmp_path, tiny_causal(["full"], devices=2, strategy="fsdp"), gpus=0, cpus=8)
    assert "does not split" in _refusal(tmp_path, _body(2, batch_size=5), gpus=0, cpus=2)
    check_devices(plan(write_experiment(tmp_path, _body(2))), 0, 2)  # asked for: accepted
    check_devices(plan(write_experiment(tmp_path, tiny_causal(["lora"], devices=2))), 2, 8)  # two GPUs: DDP


def test_run_refuses_more_devices_than_here(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match="has no GPU"):
        run_experiment(plan(write_experiment(tmp_path, tiny_causal(["lora"], devices=4))), store,
                       echo=lambda *_: None)
    assert store.runs() == []  # nothing recorded: refused before any run starts
