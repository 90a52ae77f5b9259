"""The leaderboard: one row per run, ranked by the task's main metric.

Row keys are stable (the web service and JSON consumers rely on them): method, run, status,
trainable_params, trainable_percent, peak_memory_mb, train_seconds, eval_seconds,
train_tokens_per_second, adapter_bytes, then every metric by name.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from peftlab.store import Run, Store
from peftlab.tasks.spec import main_metric

COST_KEYS = ("trainable_params", "trainable_percent", "peak_memory_mb", "train_seconds", "eval_seconds",
             "train_tokens_per_second", "adapter_bytes")
METRIC_ORDER = ("rouge1", "rouge2", "rougeL", "bleu", "accuracy", "macro_f1", "eval_loss")


def row(run: Run) -> dict[str, Any]:
    r: dict[str, Any] = {"run": run.name, "method": run.method, "status": run.status, "run_id": run.id}
    cost = run.cost or {}
    for k in COST_KEYS:
        r[k] = cost.get(k)
    for k, v in (run.metrics or {}).items():
        r[k] = v
    if run.error:
        r["error"] = run.error
    if run.diverged_step is not None:
        r["diverged_step"] = run.diverged_step
    return r


def rows(store: Store, experiment: str) -> list[dict[str, Any]]:
    exp = store.experiment(experiment)
    if exp is None:
        names = [e["name"] for e in store.experiments()]
        raise KeyError(f"no experiment {experiment!r} in {store.root}; known: {', '.join(names) or '(none)'}")
    main = main_metric(exp["task"])
    out = [row(r) for r in store.runs(experiment)]

    def key(r: dict[str, Any]) -> tuple:
        v = r.get(main)
        ok = r["status"] == "done" and isinstance(v, int | float) and not math.isnan(v)
        return (0 if ok else 1, -(v if ok else 0.0), r["run"])

    out.sort(key=key)
    for rank, r in enumerate(out, start=1):
        r["rank"] = rank if r["status"] == "done" else None
        r["main_metric"] = main
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1e5 else f"{v:.3g}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


def render(rs: list[dict[str, Any]], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(rs, indent=2)
    metric_cols = [m for m in METRIC_ORDER if any(m in r for r in rs)]
    cols = ["rank", "run", "method", "status", *metric_cols, *COST_KEYS]
    if fmt == "csv":
        buf = io.StringIO()
        extra = sorted({k for r in rs for k in r} - set(cols))
        w = csv.DictWriter(buf, fieldnames=cols + extra)
        w.writeheader()
        for r in rs:
            w.writerow(r)
        return buf.getvalue()
    from tabulate import tabulate

    short = {"trainable_params": "trainable", "trainable_percent": "train%", "peak_memory_mb": "peak MB",
             "train_seconds": "train s", "eval_seconds": "eval s", "train_tokens_per_second": "tok/s",
             "adapter_bytes": "adapter B"}
    table = [[_fmt(r.get(c)) for c in cols] for r in rs]
    text = tabulate(table, headers=[short.get(c, c) for c in cols], tablefmt="simple")
    errors = [f"  {r['run']}: {r['status']}: {r['error']}" for r in rs if r.get("error")]
    if rs:
        text += f"\n(ranked by {rs[0]['main_metric']}, higher is better)"
    return text + ("\n" + "\n".join(errors) if errors else "")
