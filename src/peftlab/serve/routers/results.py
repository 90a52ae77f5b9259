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
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse

from peftlab.report.leaderboard import rows
from peftlab.serve.deps import StoreDep, find_experiment
from peftlab.store import Store
from peftlab.tasks.spec import main_metric

router = APIRouter(tags=["results"])


def recommendation(store: Store, experiment: str, budget: Any = None) -> dict[str, Any]:
    """The answer (`peftlab.report.recommend`, from the leaderboard's rows), in the API's shape:
    what the Results page, Export's mark and the model card show."""
    from peftlab.report.collect import collect
    from peftlab.report.recommend import recommend

    return recommend(collect(store, [experiment]), budget).as_dict()


def fingerprint(store: Store, experiment: str) -> str:
    """Changes whenever a run of the experiment changes state (what the report shows)."""
    rows = [(r.id, r.status, r.finished_at, r.config_hash) for r in store.runs(experiment)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


_REPORTS: dict[str, tuple[str, str]] = {}
_REPORT_LOCK = threading.Lock()


def _budget(max_memory_mb: float | None, max_train_seconds: float | None,
            max_trainable_percent: float | None, max_forgetting: float | None = None) -> Any:
    from peftlab.report.recommend import Budget

    return Budget(max_memory_mb, max_train_seconds, max_trainable_percent, max_forgetting)


def report_html(store: Store, experiments: str | list[str], budget: Any = None, bertscore: bool = True) -> str:
    """The HTML report of one experiment (or, given several, the comparison of `peftlab compare`),
    as `peftlab report` writes it: BERTScore included for generation tasks (computed once per run
    with the experiment's encoder and kept in its metrics), within `budget` when given; cached
    until a run changes."""
    from peftlab.report.collect import add_bertscores, collect, version_drift
    from peftlab.report.html import ReportOptions, render
    from peftlab.report.recommend import Budget, recommend

    names = [experiments] if isinstance(experiments, str) else list(experiments)
    budget = budget or Budget()
    fp = "|".join(fingerprint(store, n) for n in names)
    key = f"{store.root.resolve()}::{','.join(names)}::{budget}::{bertscore}"
    with _REPORT_LOCK:
        hit = _REPORTS.get(key)
        if hit and hit[0] == fp:
            return hit[1]
        data = collect(store, names)
        problems = add_bertscores(store, data, None) if bertscore and data.generative else []
        problems += version_drift(data.runs)
        title = f"peftlab: {' vs '.join(names)}"
        opts = ReportOptions(bertscore=bertscore, title=title, budget=budget)
        page = render(data, opts, problems, recommend(data, budget))
        if len(_REPORTS) > 32:
            _REPORTS.clear()
        _REPORTS[key] = (fp, page)
        return page


def leaderboard(store: Store, experiment: str, budget: Any = None) -> dict[str, Any]:
    """The leaderboard's rows (one per method configuration, its seeds under `seeds`) and the answer."""
    from peftlab.report.collect import method_color

    exp = find_experiment(store, experiment)
    rs = rows(store, experiment)
    for r in rs:
        for k, v in list(r.items()):
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
        r["color"] = "#9aa1ad" if r.get("baseline") else method_color(r["method"])
    return {"experiment": experiment, "task": exp["task"], "model": exp["model"], "main_metric": main_metric(exp["task"]),
            "rows": rs, "recommendation": recommendation(store, experiment, budget),
            "fingerprint": fingerprint(store, experiment)}


def outputs(store: Store, experiment: str, limit: int = 10, offset: int = 0) -> dict[str, Any]:
    """The test predictions of every finished final run, row by row (same test set for all runs).
    Tuning trials are left out: their predictions are of the validation split."""
    from peftlab.report.leaderboard import is_trial

    runs = [r for r in store.runs(experiment) if r.status == "done" and not is_trial(r)]
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


_BEST: dict[str, tuple[str, dict[str, Any]]] = {}


def best_of(store: Store, experiment: str) -> dict[str, Any]:
    """The experiment's answer for its home row, from `recommend` (the Results page's, from the
    leaderboard's rows): the recommended row, or while runs are going the row leading so far;
    its main metric's value and interval. Cached until a run changes."""
    from peftlab.report.collect import collect
    from peftlab.report.recommend import recommend

    fp = fingerprint(store, experiment)
    key = f"{store.root.resolve()}::{experiment}"
    hit = _BEST.get(key)
    if hit and hit[0] == fp:
        return hit[1]
    try:
        rec = recommend(collect(store, [experiment]))
    except Exception:  # noqa: BLE001 - no runs yet, or nothing to rank: no answer
        out: dict[str, Any] = {"run": None, "final": False, "headline": None}
    else:
        row = rec.recommended or rec.best
        m = rec.main_metric
        value = row.get(m) if row else None
        out = {"run": row["run"] if row else None, "method": row.get("method") if row else None,
               "recommended": rec.recommended is not None, "final": rec.final, "metric": m,
               "value": value if isinstance(value, (int, float)) and math.isfinite(value) else None,
               "ci_low": row.get(f"{m}_ci_low") if row else None, "ci_high": row.get(f"{m}_ci_high") if row else None,
               "headline": rec.as_dict()["headline"]}
    if len(_BEST) > 256:
        _BEST.clear()
    _BEST[key] = (fp, out)
    return out


def overview(store: Store) -> list[dict[str, Any]]:
    """Every experiment as the home page lists it: task, model, data, its runs (name, status,
    times: the page counts "n of N done" against the plan as Jobs does), its plan, its tuning
    driver's state and its answer (`best_of`)."""
    from peftlab.serve.launch import driver_state
    from peftlab.tune.plan import load_plan

    out = []
    for e in store.experiments():
        name = e["name"]
        full = store.experiment(name) or {}
        data = ((full.get("config") or {}).get("data") or {})
        train = data.get("train") or data.get("dataset") or ""
        runs = [{"id": r.id, "experiment": name, "name": r.name, "method": r.method, "status": r.status,
                 "started_at": r.started_at,
                 "finished_at": r.finished_at} for r in store.runs(name)]
        d = driver_state(store, name)
        out.append({"name": name, "task": e["task"], "model": e["model"], "data": str(train),
                    "created_at": e["created_at"], "updated_at": e["updated_at"], "runs": runs,
                    "plan": load_plan(store.root, name), "driving": bool(d and d.get("running")),
                    "best": best_of(store, name)})
    return out


# -- routes ---------------------------------------------------------------------
@router.get("/api/overview")
def overview_route(store: StoreDep) -> list[dict[str, Any]]:
    """The experiments home: each experiment with its runs, plan and answer (see `overview`)."""
    return overview(store)


def _q() -> Any:
    return Query(None, gt=0)  # a Query per parameter (one shared FieldInfo would be one parameter)


@router.get("/api/experiments/{name}/leaderboard", name="leaderboard")
def leaderboard_route(name: str, store: StoreDep, max_memory_mb: float | None = _q(),
                      max_train_seconds: float | None = _q(),
                      max_trainable_percent: float | None = _q(), max_forgetting: float | None = _q()) -> dict[str, Any]:
    """Ranked rows (with intervals, rank groups and the majority-class baseline of classification),
    and the recommendation, within the budget when one is given."""
    return leaderboard(store, name, _budget(max_memory_mb, max_train_seconds, max_trainable_percent, max_forgetting))


@router.get("/api/experiments/{name}/report.html", response_class=HTMLResponse)
def report(name: str, store: StoreDep, max_memory_mb: float | None = _q(),
           max_train_seconds: float | None = _q(), max_trainable_percent: float | None = _q(), max_forgetting: float | None = _q(),
           bertscore: bool = True) -> HTMLResponse:
    """The experiment's HTML report (the one `peftlab report` writes), re-rendered when a run changes."""
    find_experiment(store, name)
    page = report_html(store, name, _budget(max_memory_mb, max_train_seconds, max_trainable_percent, max_forgetting), bertscore)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/api/compare/report.html", response_class=HTMLResponse)
def compare(store: StoreDep, experiments: str = Query(description="Experiment names, comma-separated"),
            max_memory_mb: float | None = _q(), max_train_seconds: float | None = _q(),
            max_trainable_percent: float | None = _q(), max_forgetting: float | None = _q(), bertscore: bool = True) -> HTMLResponse:
    """The runs of several experiments in one report (`peftlab compare`)."""
    names = [n.strip() for n in experiments.split(",") if n.strip()]
    if not names:
        raise HTTPException(400, "name at least one experiment")
    for n in names:
        find_experiment(store, n)
    page = report_html(store, names, _budget(max_memory_mb, max_train_seconds, max_trainable_percent, max_forgetting), bertscore)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/api/experiments/{name}/example")
def example(name: str, store: StoreDep, index: int = Query(0, ge=0)) -> dict[str, Any]:
    """A test example of the experiment as a person types it in the playground: the value of each
    input column (found by formatting the data file's rows as the engine does), its reference, and
    the outputs the finished runs gave it at test time."""
    return find_test_example(store, name, index)


def find_test_example(store: Store, name: str, index: int) -> dict[str, Any]:
    from peftlab.config import ExperimentConfig
    from peftlab.data.prepare import _format_source, _source_columns
    from peftlab.data.sources import read_rows

    e = find_experiment(store, name)
    got = outputs(store, name, limit=1, offset=index)
    if not got["rows"]:
        n = len(outputs(store, name, limit=200)["rows"])
        raise HTTPException(404, f"no test example {index} (the finished runs have {n} test outputs)" if n else
                            "no finished run with test outputs yet")
    row = got["rows"][0]
    cfg = ExperimentConfig.model_validate(e["config"])
    cols = _source_columns(cfg.data)
    base = Path(e["base_dir"]) if e.get("base_dir") else None
    inputs = None
    for f in (cfg.data.test, cfg.data.train, cfg.data.validation):
        if not f or inputs is not None:
            continue
        try:
            raw = read_rows(f, base, "skip").rows
        except Exception:  # noqa: BLE001 - a moved file: the formatted input is still returned
            continue
        for r in raw:
            if all(r.get(c) is not None for c in cols) and _format_source(cfg.data, r) == row["input"]:
                inputs = {c: r[c] if isinstance(r[c], str) else str(r[c]) for c in cols}
                break
    return {"index": row["index"], "inputs": inputs, "text": inputs[cols[0]] if inputs and len(cols) == 1 else None,
            "source": row["input"], "reference": row["reference"], "outputs": row["outputs"], "columns": cols}


@router.get("/api/experiments/{name}/outputs", name="outputs")
def outputs_route(name: str, store: StoreDep, limit: int = Query(10, ge=1, le=200),
                  offset: int = Query(0, ge=0)) -> dict[str, Any]:
    find_experiment(store, name)
    return outputs(store, name, limit, offset)


@router.get("/api/experiments/{name}/curves")
def experiment_curves(name: str, store: StoreDep) -> dict[str, Any]:
    find_experiment(store, name)
    return curves(store, name)
