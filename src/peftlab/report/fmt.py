"""Number formatting shared by the HTML report, its SVG charts and the PNG charts."""

from __future__ import annotations

import math
from typing import Any

COST_LABELS = {
    "trainable_params": "trainable parameters",
    "trainable_percent": "trainable %",
    "peak_memory_mb": "peak memory (MB)",
    "train_seconds": "train time (s)",
    "train_cpu_seconds": "train CPU time (s)",
    "eval_seconds": "eval time (s)",
    "train_tokens_per_second": "train tokens/s",
    "adapter_bytes": "adapter size",
    "forgetting": "forgetting (nats/token)",
}
# Higher is better for these; lower for losses and costs.
HIGHER_IS_BETTER_COSTS = {"train_tokens_per_second"}


def higher_is_better(key: str) -> bool:
    if key in HIGHER_IS_BETTER_COSTS:
        return True
    return not (key in COST_LABELS or "loss" in key)


def si(v: float) -> str:
    """1234567 -> 1.23M."""
    a = abs(v)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def human_bytes(v: float) -> str:
    """Decimal units (1 kB = 1000 B), so log-axis decades land on round labels."""
    a = abs(v)
    for div, suf in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if a >= div:
            return f"{v / div:.3g} {suf}"
    return f"{int(v)} B"


def fmt_value(key: str, v: Any) -> str:
    """A table cell: metrics with 2 decimals, costs in their natural unit."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if key == "adapter_bytes":
        return human_bytes(v)
    if key in ("trainable_params", "total_params", "train_tokens"):
        return f"{int(v):,}"
    if key == "trainable_percent":
        return f"{v:.3g}%" if v < 1 else f"{v:.1f}%"
    if key in ("train_seconds", "eval_seconds", "train_cpu_seconds"):
        return f"{v:.1f}"
    if key in ("peak_memory_mb", "train_tokens_per_second"):
        return f"{v:,.0f}"
    if key == "forgetting":
        return f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 0.01 or v == 0:
        return f"{v:.2f}"
    return f"{v:.3g}"


def axis_fmt(key: str, v: float) -> str:
    """A short tick label."""
    if key == "adapter_bytes":
        return human_bytes(v)
    if key == "trainable_params":
        return si(v)
    if key == "trainable_percent":
        return f"{v:g}%"
    if key == "peak_memory_mb":
        return f"{v:,.0f}"
    if abs(v) >= 1000:
        return si(v)
    return f"{v:.4g}"


def fmt_p(p: float | None, bound: bool = False) -> str:
    """A p-value as a reader should take it: '< 0.001' below that, '≤ 0.004' where the test's
    resolution floor bounds it (a resampling test cannot give less), else two digits."""
    if p is None:
        return "–"
    if p < 0.001:
        return "< 0.001"
    return f"≤ {p:.2g}" if bound else f"{p:.2g}"
