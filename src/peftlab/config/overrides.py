"""Flags that set experiment keys: one mapping for the CLI (`peftlab run --max-steps ...`) and
the web API (`POST /api/experiments` with `max_steps`, ...), so the two cannot disagree."""

from __future__ import annotations

from typing import Any

FLAG_KEYS: dict[str, str] = {
    "max_steps": "training.max_steps",
    "epochs": "training.epochs",
    "batch_size": "training.batch_size",
    "learning_rate": "training.learning_rate",
    "seed": "training.seed",
    "precision": "training.precision",
    "max_train_examples": "data.max_train_examples",
    "max_eval_examples": "data.max_test_examples",  # "eval" examples are the test split's
    "max_validation_examples": "data.max_validation_examples",
    "tune": "tuning.trials",
    "budget": "tuning.budget",  # --budget 45m: race the methods within 45 minutes (a tuning section is made if absent)  # --tune N: tune each method with N trials (a tuning section is made if absent)
}


def overrides_from(flags: dict[str, Any]) -> dict[str, Any]:
    """Dotted experiment keys for the flags that are set (None: not given)."""
    return {FLAG_KEYS[k]: v for k, v in flags.items() if k in FLAG_KEYS and v is not None}


def apply_overrides(body: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`body` (an experiment as a dict) with dotted `overrides` set in place of its values."""
    for key, value in overrides.items():
        node = body
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return body
