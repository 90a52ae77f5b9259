"""The benchmarks' tiny experiment: stories260k (a 260k-parameter llama) on a few statista rows,
trained in seconds in this process. The load tests serve it; `--tiny` modes run on it so the
default test suite can run every benchmark end to end (tests/test_benchmark.py). Needs ../shared
(or PEFTLAB_SHARED)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEFTLAB_SHARED", REPO.parent / "shared"))


def experiment(name: str, methods: list[dict[str, Any]], n_train: int = 32, n_test: int = 4,
               **training: Any) -> dict[str, Any]:
    """The experiment body (what a YAML file would hold); `training` overrides its settings."""
    data = SHARED / "data" / "statista"
    return {"name": name, "model": str(SHARED / "models" / "stories260k"), "task": "causal-lm",
            "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                     "test": str(data / "test.jsonl"), "prompt": "Table: {table}\nTitle:", "target": "title",
                     "max_train_examples": n_train, "max_validation_examples": 4, "max_test_examples": n_test},
            "methods": methods,
            "training": {"max_steps": 4, "batch_size": 8, "max_source_length": 48, "max_target_length": 16,
                         "threads": 1, **training},
            "evaluation": {"max_new_tokens": 6}}


def use_shared() -> None:
    """Resolve model and data names in ../shared, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PEFTLAB_MODEL_PATH", str(SHARED / "models"))
    os.environ.setdefault("PEFTLAB_DATA_PATH", str(SHARED / "data"))


def build_store(store_dir: Path, body: dict[str, Any]) -> Path:
    """Train every run of `body` into a store at `store_dir`, in this process; stop if one fails."""
    use_shared()
    from peftlab.queue.jobs import make_plan
    from peftlab.store import Store
    from peftlab.train.runner import run_experiment

    runs = run_experiment(make_plan(body), Store(store_dir), isolation="inprocess", echo=lambda *_: None)
    bad = [(r.name, r.error) for r in runs if r.status != "done"]
    if bad:
        raise SystemExit(f"could not build the tiny experiment {body['name']!r}: {bad}")
    return store_dir
