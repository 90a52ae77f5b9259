"""Model folders that would fail deep inside a worker fail in preflight instead, naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import STORIES, needs_shared

from peftlab.config.schema import ModelConfig
from peftlab.errors import ModelError
from peftlab.models import load_tokenizer, resolve_model

pytestmark = needs_shared


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(STORIES, dst)
    return dst


@pytest.mark.parametrize("keep", [4, 2_000, 100])  # inside the length, inside the header, inside the tensors
def test_truncated_weights_are_named_in_preflight(tmp_path: Path, keep: int) -> None:
    d = _copy(tmp_path)
    w = d / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:keep] if keep != 100 else data[: len(data) - 100])
    with pytest.raises(ModelError, match="model.safetensors: not a complete safetensors file") as e:
        resolve_model(ModelConfig(path=str(d)))
    assert "again" in str(e.value)


def test_missing_tokenizer_files_are_listed(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        (d / f).unlink(missing_ok=True)
    cfg = ModelConfig(path=str(d))
    with pytest.raises(ModelError, match="no tokenizer files .*tokenizer.json"):
        load_tokenizer(resolve_model(cfg), cfg, "causal-lm")
