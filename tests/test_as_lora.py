"""`peftlab export --as-lora RANK`: a weight-delta adapter written as a plain LoRA that a LoRA-only
server loads, kept only when its greedy outputs equal the original's on the probe inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import STORIES, needs_shared, write_experiment
from test_matrix import _experiment

from peftlab.cli import main
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


@pytest.fixture(scope="module")
def loha_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("as-lora")
    body = _experiment("causal-lm", STORIES, "loha")
    body["methods"] = ["loha", "lora"]
    [a, b] = run_experiment(plan(write_experiment(tmp, body)), Store(tmp / "store"), isolation="inprocess",
                            echo=lambda *_: None)
    assert a.status == b.status == "done", (a.error, b.error)
    return tmp / "store"


def test_a_loha_adapter_converts_and_reloads_as_plain_lora(loha_store: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lora-out"
    assert main(["export", "m-causal-lm-loha", "loha", "--store", str(loha_store), "--as-lora", "32", "-o", str(out)]) == 0
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 32
    check = json.loads((out / "peftlab-lora-check.json").read_text())
    assert check["passed"] and check["same_greedy_outputs"] and check["probes"] == 4
    assert "converted to a rank-32 LoRA" in capsys.readouterr().out
    # and plain peft loads it on the original base
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(STORIES), str(out))


def test_a_conversion_that_changes_an_output_is_refused(loha_store: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from peftlab.infer import as_lora

    real = as_lora._observe
    calls = {"n": 0}

    def observe(model, task, exs):  # noqa: ANN001, ANN202 - the converted adapter answers one probe otherwise
        calls["n"] += 1
        outs, logits = real(model, task, exs)
        return (outs if calls["n"] == 1 else ["something else", *outs[1:]]), logits

    monkeypatch.setattr(as_lora, "_observe", observe)
    out = tmp_path / "low"
    assert main(["export", "m-causal-lm-loha", "loha", "--store", str(loha_store), "--as-lora", "32",
                 "-o", str(out)]) == 2
    assert "LoRA conversion check failed: greedy outputs differ on 1 of 4 probes" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["peftlab-lora-check.json"]  # the LoRA was not kept


def test_a_lora_run_needs_no_conversion(loha_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "m-causal-lm-loha", "lora", "--store", str(loha_store), "--as-lora", "8",
                 "-o", str(tmp_path / "x")]) == 2
    assert "is a LoRA already" in capsys.readouterr().err
