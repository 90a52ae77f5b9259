"""Results of an experiment: what the Results page shows.

The page itself is the HTML report of `peftlab report` (`peftlab.report.html`: recommendation,
leaderboard, curves, cost vs quality, outputs side by side, ...), rendered for one experiment
and re-rendered when its runs change; the recommendation is the report's own
(`peftlab.report.recommend`). The JSON endpoints (leaderboard rows, curves, outputs) serve API
clients and the live parts of the page.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from peftlab.report.leaderboard import rows
from peftlab.serve.deps import StoreDep, find_experiment
from peftlab.store import Store
from peftlab.tasks.spec import main_metric

router = APIRouter(tags=["results"])


def recommendation(store: Store, experiment: str, rs: list[dict[str, Any]]) -> dict[str, Any]:
    """The HTML report's recommendation (`peftlab.report.recommend`), in the API's shape."""
    from peftlab.report.collect import collect
    from peftlab.report.recommend import recommend

    rec = recommend(collect(store, [experiment]))
    pick = rec.best_in_budget or rec.best
    pending = [r["run"] for r in rs if r["status"] in ("queued", "running")]
    text = rec.text or "No finished runs yet."
    if pending:
        text += f"\n\n({len(pending)} run(s) still going: {', '.join(pending)}; this may change.)"
    return {"run": pick.run.name if pick else None, "run_id": pick.run.id if pick else None,
            "best": rec.best.run.name if rec.best else None, "text": text, "html": rec.html,
            "final": not pending, "pending": pending, "source": "peftlab.report.recommend"}


def fingerprint(store: Store, experiment: str) -> str:
    """Changes whenever a run of the experiment changes state (what the report shows)."""
    rows = [(r.id, r.status, r.finished_at, r.config_hash) for r in store.runs(experiment)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


_REPORTS: dict[str, tuple[str, str]] = {}
_REPORT_LOCK = threading.Lock()


def report_html(store: Store, experiment: str) -> str:
    """The experiment's HTML report (without BERTScore, which needs a model download), cached
    until a run changes."""
    from peftlab.report.collect import collect
    from peftlab.report.html import ReportOptions, render

    fp = fingerprint(store, experiment)
    key = f"{store.root.resolve()}::{experiment}"
    with _REPORT_LOCK:
        hit = _REPORTS.get(key)
        if hit and hit[0] == fp:
            return hit[1]
        page = render(collect(store, [experiment]), ReportOptions(bertscore=False, title=f"peftlab: {experiment}"))
        _REPORTS[key] = (fp, page)
        return page


def leaderboard(store: Store, experiment: str) -> dict[str, Any]:
    exp = find_experiment(store, experiment)
    rs = rows(store, experiment)
    for r in rs:
        for k, v in list(r.items()):
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
    rec = recommendation(store, experiment, rs)
    return {"experiment": experiment, "task": exp["task"], "model": exp["model"], "main_metric": main_metric(exp["task"]),
            "rows": rs, "recommendation": rec, "fingerprint": fingerprint(store, experiment)}


def outputs(store: Store, experiment: str, limit: int = 10, offset: int = 0) -> dict[str, Any]:
    """The test predictions of every finished run, row by row (same test set for all runs)."""
    runs = [r for r in store.runs(experiment) if r.status == "done"]
    cols: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        p = r.file("predictions")
        if p is None or not p.is_file():
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


# -- routes ---------------------------------------------------------------------
@router.get("/api/experiments/{name}/leaderboard", name="leaderboard")
def leaderboard_route(name: str, store: StoreDep) -> dict[str, Any]:
    return leaderboard(store, name)


@router.get("/api/experiments/{name}/report.html", response_class=HTMLResponse)
def report(name: str, store: StoreDep) -> HTMLResponse:
    """The experiment's HTML report (the one `peftlab report` writes), re-rendered when a run changes."""
    find_experiment(store, name)
    return HTMLResponse(report_html(store, name), headers={"Cache-Control": "no-store"})


@router.get("/api/experiments/{name}/outputs", name="outputs")
def outputs_route(name: str, store: StoreDep, limit: int = Query(10, ge=1, le=200),
                  offset: int = Query(0, ge=0)) -> dict[str, Any]:
    find_experiment(store, name)
    return outputs(store, name, limit, offset)


@router.get("/api/experiments/{name}/curves")
def experiment_curves(name: str, store: StoreDep) -> dict[str, Any]:
    find_experiment(store, name)
    return curves(store, name)
