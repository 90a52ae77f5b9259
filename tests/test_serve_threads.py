"""`--threads` of `serve` and `predict` (issue #30): applied with torch.set_num_threads in the
process (and thread) that computes; serve's default is half the CPUs, at least 1 (measured on 2
shared cores: one thread answered /v1 4-6x faster than two, see `infer.threads.serve_threads`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_shared
from test_serve_errors import zero_shot_store

from peftlab.cli import main

pytestmark = needs_shared


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zero_shot_store(tmp_path_factory.mktemp("threads"))


@pytest.fixture
def torch_threads() -> Any:
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def _served_settings(monkeypatch: pytest.MonkeyPatch, store: Path, *args: str) -> Any:
    import peftlab.serve.app as app

    seen = []
    monkeypatch.setattr(app, "serve", lambda settings, **kw: seen.append(settings))
    assert main(["--store", str(store), "serve", "--no-worker", *args]) == 0
    return seen[0]


def test_serve_threads_option_and_default(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    assert _served_settings(monkeypatch, store, "--threads", "3").threads == 3
    assert _served_settings(monkeypatch, store, "--threads", "0").threads is None  # torch's own default
    assert _served_settings(monkeypatch, store).threads == max(1, (os.cpu_count() or 2) // 2)


def test_the_engine_thread_computes_with_the_threads_given(store: Path, torch_threads: Any) -> None:
    from peftlab.infer.engine import Engine
    from peftlab.infer.pool import ModelPool
    from peftlab.store import Store

    seen: list[int] = []
    engine = Engine(Store(store), ModelPool(), threads=1)
    try:
        job = engine.prepare("tiny/zero-shot", prompt="x", temperature=0, max_tokens=2,
                             on_text=lambda s: seen.append(torch_threads.get_num_threads()))
        engine.submit(job).result(timeout=120)
        assert engine.status()["threads"] == 1
        assert seen and set(seen) == {1}  # read in the batching thread, while it generates
    finally:
        engine.close()


def test_predict_threads(store: Path, tmp_path: Path, torch_threads: Any) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"table": "0 Year: 2018"}) + "\n", encoding="utf-8")
    torch_threads.set_num_threads(2)
    assert main(["--store", str(store), "predict", "tiny", "zero-shot", "--input", str(src),
                 "--output", str(tmp_path / "out.jsonl"), "--threads", "1"]) == 0
    assert torch_threads.get_num_threads() == 1
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8").count("\n") == 1
