"""What the Results page shows: the leaderboard rows, a recommendation, side-by-side outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from peftlab.report.leaderboard import MAIN_METRIC, rows
from peftlab.store import Store

NEAR_BEST = 0.02  # a run within 2% (relative) of the best score counts as "as good"


def _score(r: dict[str, Any]) -> float | None:
    v = r.get(r.get("main_metric", ""))
    return float(v) if isinstance(v, int | float) and not math.isnan(v) else None


def recommend(rs: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """Pick the run to use: the cheapest (fewest trainable parameters, then fastest) among the
    runs scoring within 2% of the best on the task's main metric; explain why in one paragraph."""
    metric = MAIN_METRIC[task]
    done = [r for r in rs if r["status"] == "done" and _score(r) is not None]
    pending = [r["run"] for r in rs if r["status"] in ("queued", "running")]
    wait = f" ({len(pending)} run(s) still going: {', '.join(pending)}; this may change)" if pending else ""
    if not done:
        return {"run": None, "metric": metric, "text": "No finished runs yet." + wait, "final": not pending}
    best = max(done, key=lambda r: _score(r) or 0.0)
    b = _score(best) or 0.0
    zs = next((r for r in done if r["method"] == "zero-shot"), None)
    trained = [r for r in done if r["method"] != "zero-shot"]
    if best["method"] == "zero-shot" or not trained:
        text = (f"No fine-tuning method beat zero-shot on {metric} ({b:.2f}). Train longer (more steps or "
                f"examples) or check the column mapping.{wait}")
        return {"run": best["run"], "metric": metric, "text": text, "final": not pending, "best": best["run"]}
    near = [r for r in trained if (_score(r) or 0.0) >= b - NEAR_BEST * abs(b)]
    rec = min(near, key=lambda r: (r.get("trainable_params") or float("inf"), r.get("train_seconds") or 0.0))
    v = _score(rec) or 0.0
    parts = [f"Use {rec['run']} ({rec['method']}): {metric} {v:.2f}"]
    if rec is best:
        parts.append("the best score")
    else:
        parts.append(f"within {NEAR_BEST:.0%} of the best ({best['run']}, {b:.2f}) with fewer trainable parameters")
    if rec.get("trainable_params") is not None:
        pct = rec.get("trainable_percent")
        parts.append(f"{rec['trainable_params']:,} trainable parameters" + (f" ({pct:.3g}% of the model)"
                                                                               if pct is not None else ""))
    if zs is not None:
        parts.append(f"{v - (_score(zs) or 0.0):+.2f} over zero-shot")
    return {"run": rec["run"], "run_id": rec["run_id"], "metric": metric, "best": best["run"],
            "text": "; ".join(parts) + "." + wait, "final": not pending}


def leaderboard(store: Store, experiment: str) -> dict[str, Any]:
    exp = store.experiment(experiment)
    if exp is None:
        raise KeyError(experiment)
    rs = rows(store, experiment)
    for r in rs:
        for k, v in list(r.items()):
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
    return {"experiment": experiment, "task": exp["task"], "model": exp["model"], "main_metric": MAIN_METRIC[exp["task"]],
            "rows": rs, "recommendation": recommend(rs, exp["task"])}


def outputs(store: Store, experiment: str, limit: int = 10, offset: int = 0) -> dict[str, Any]:
    """The test predictions of every finished run, row by row (same test set for all runs)."""
    runs = [r for r in store.runs(experiment) if r.status == "done"]
    cols: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        p = (r.info or {}).get("predictions")
        if not p or not Path(p).is_file():
            continue
        items = []
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i < offset:
                    continue
                if len(items) >= limit:
                    break
                items.append(json.loads(line))
        cols[r.name] = items
    n = min((len(v) for v in cols.values()), default=0)
    out = []
    for i in range(n):
        first = next(iter(cols.values()))[i]
        out.append({"index": offset + i, "input": first.get("input"), "reference": first.get("reference"),
                    "outputs": {name: items[i].get("output") for name, items in cols.items()}})
    return {"experiment": experiment, "runs": list(cols), "rows": out}


def curves(store: Store, experiment: str) -> dict[str, Any]:
    out = {}
    for r in store.runs(experiment):
        c = store.curves(r.id)
        if c:
            out[r.name] = {k: [[s, v] for s, v in pts] for k, pts in c.items()}
    return {"experiment": experiment, "curves": out}
