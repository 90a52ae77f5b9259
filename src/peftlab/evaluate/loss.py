"""Mean loss over a split, weighted by target tokens (generation) or examples (classification)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from peftlab.device import autocast


def mean_loss(
    model: Any,
    features: list[dict[str, Any]],
    collate: Callable,
    batch_size: int,
    precision: str,
    desc: str = "loss",
    loss: Callable | None = None,
) -> float:
    """`loss(model, batch)` is the task's batch loss (default: the model's own)."""
    dev = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: len(features[i].get("input_ids", ())))
    total, weight = 0.0, 0
    was = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            for s in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
                batch = collate([features[i] for i in order[s : s + batch_size]])
                labels = batch["labels"]
                w = int((labels != -100).sum()) if labels.dim() > 1 else len(labels)
                if w == 0:
                    continue
                batch = {k: v.to(dev) for k, v in batch.items()}
                value = loss(model, batch) if loss else model(**batch).loss
                total += float(value) * w
                weight += w
    finally:
        model.train(was)
    return total / weight if weight else float("nan")
