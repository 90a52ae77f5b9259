"""A GGUF checkpoint (SmolLM2-135M-Instruct, Q4_1) loads, is dequantized once into a cached
plain copy, and still allows full fine-tuning (transformers refuses to train models it
flags as quantized)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import DATA, SMOLLM, needs_shared, write_experiment

from peftlab.config.schema import ModelConfig
from peftlab.models import resolve_model
from peftlab.store import Store
from peftlab.train.runner import plan, run_experiment

pytestmark = needs_shared


def test_gguf_full_fine_tuning(tmp_path: Path) -> None:
    rm = resolve_model(ModelConfig(path=str(SMOLLM)))
    assert rm.gguf_source and rm.gguf_source.endswith(".gguf")
    cfg = json.loads((Path(rm.path) / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    assert resolve_model(ModelConfig(path=str(SMOLLM))).path == rm.path  # cached, not redone

    body = {
        "name": "gguf-full", "model": "smollm2-135m-instruct-gguf", "task": "causal-lm",
        "data": {"train": str(DATA / "statista/train.jsonl"), "test": str(DATA / "statista/test.jsonl"),
                 "validation": str(DATA / "statista/validation.jsonl"), "prompt": "Title of this table:\n{table}",
                 "target": "title", "max_train_examples": 2, "max_test_examples": 2, "max_validation_examples": 2},
        "methods": ["full"],
        "training": {"max_steps": 1, "batch_size": 2, "max_source_length": 24, "max_target_length": 8},
        # forgetting off: this test is about loading a GGUF; forgetting has its own (tests/test_forgetting.py)
        "evaluation": {"max_new_tokens": 4, "batch_size": 2, "forgetting": False},
    }
    store = Store(tmp_path / "store")
    [run] = run_experiment(plan(write_experiment(tmp_path, body)), store, isolation="inprocess", echo=lambda *_: None)
    assert run.status == "done", run.error
    assert run.cost["trainable_params"] == run.cost["total_params"] > 100_000_000
    assert (run.file("artifact") / "model.safetensors").is_file()
