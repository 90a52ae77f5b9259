"""Rows that are not runs, and flags on runs: the majority-class baseline of a text classification
experiment, and predictions that collapse onto one class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftlab.store import Run, Store
from peftlab.tasks.spec import SPECS

MAJORITY = "majority-class"
COLLAPSE_SHARE = 0.9
_MAJORITY_CACHE: dict[str, dict[str, Any] | None] = {}


def has_majority_baseline(task: str | None) -> bool:
    """A majority-class row applies to text tasks that predict a label (the image task's data are
    not read again for a report)."""
    s = SPECS.get(task or "")
    return s is not None and s.target_key == "label" and s.text_input


def majority_baseline(store: Store, experiment: str) -> dict[str, Any] | None:
    """The majority-class row of a (text) classification experiment: the most frequent label of
    its training examples (as its runs sample them), predicted for every test example and scored
    with the runs' metrics. None for other tasks, or when its data cannot be read any more."""
    exp = store.experiment(experiment)
    if exp is None or not has_majority_baseline(exp["task"]) or not exp.get("config"):
        return None
    from peftlab.config import ExperimentConfig
    from peftlab.data.prepare import prepare_data
    from peftlab.evaluate.metrics import classification_metrics

    try:
        cfg = ExperimentConfig.model_validate(exp["config"])
    except ValueError:
        return None
    base = Path(exp["base_dir"]) if exp.get("base_dir") else None
    files = [f for f in (cfg.data.train, cfg.data.validation, cfg.data.test) if f]
    stamp = [(f, (base / f if base and not Path(f).is_absolute() else Path(f)).stat().st_mtime_ns)
             for f in files if (base / f if base and not Path(f).is_absolute() else Path(f)).is_file()]
    key = json.dumps([cfg.data.model_dump(mode="json"), cfg.training.seed, stamp, str(base)], sort_keys=True)
    if key in _MAJORITY_CACHE:
        return _MAJORITY_CACHE[key]
    try:
        data = prepare_data(cfg.data, cfg.task, cfg.training.seed, base)
    except Exception:  # noqa: BLE001 - moved or edited data: the report goes on without the row
        _MAJORITY_CACHE[key] = None
        return None
    names = data.labels or []
    counts = [0] * len(names)
    for e in data.train:
        counts[int(e.label or 0)] += 1
    top = max(range(len(names)), key=lambda i: (counts[i], -i))
    gold = [int(e.label or 0) for e in data.test]
    m = classification_metrics([top] * len(gold), gold, names)
    m.pop("_per_class", None)
    out = {"run": MAJORITY, "method": MAJORITY, "status": "baseline", "baseline": True, "run_id": None,
           **m, "trainable_params": 0, "trainable_percent": 0.0,
           "majority_label": names[top], "majority_id": top, "majority_train_share": 100.0 * counts[top] / max(1, len(data.train)),
           "test_examples": len(gold),
           "note": f"always predicts {names[top]!r}, the most frequent training label "
                   f"({100.0 * counts[top] / max(1, len(data.train)):.0f}% of {len(data.train)} training examples); "
                   "a baseline row, not a run"}
    if len(_MAJORITY_CACHE) > 64:
        _MAJORITY_CACHE.clear()
    _MAJORITY_CACHE[key] = out
    return out


def collapse(predictions: list[dict[str, Any]] | None, labels: list[str] | None, split: str = "test") -> str | None:
    """Why a classifier's predictions on `split` collapse onto one class ("97% of test predictions
    are 'neutral', against 59% of the test labels"), or None: at least
    COLLAPSE_SHARE of them, and 10 points more than that class's share of the labels."""
    preds = [p for p in predictions or [] if "pred_id" in p]
    if len(preds) < 5:
        return None
    from collections import Counter

    k, n = Counter(int(p["pred_id"]) for p in preds).most_common(1)[0]
    share = n / len(preds)
    gold = sum(1 for p in preds if int(p.get("gold_id", -1)) == k) / len(preds)
    if share < COLLAPSE_SHARE or share - gold < 0.1:
        return None
    name = labels[k] if labels and 0 <= k < len(labels) else str(k)
    return f"{100 * share:.0f}% of {split} predictions are {name!r}, against {100 * gold:.0f}% of the {split} labels"


_COLLAPSE_CACHE: dict[tuple[str, int], str | None] = {}


def _collapsed(run: Run) -> str | None:
    p = run.file("predictions")
    if run.status != "done" or p is None or not p.is_file():
        return None
    key = (str(p), p.stat().st_mtime_ns)
    if key not in _COLLAPSE_CACHE:
        with open(p, encoding="utf-8") as f:
            preds = [json.loads(line) for line in f if line.strip()]
        if len(_COLLAPSE_CACHE) > 512:
            _COLLAPSE_CACHE.clear()
        info = run.info or {}  # (a tuning trial's or a race's run is scored on the validation split)
        _COLLAPSE_CACHE[key] = collapse(preds, info.get("labels"), info.get("scored_split") or "test")
    return _COLLAPSE_CACHE[key]


