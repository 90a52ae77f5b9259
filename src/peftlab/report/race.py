"""The race (`tune.race`) as the report and the leaderboard show it, from its state in the store:
each method's validation score per rung, where it dropped out and why, the budget spent.

A method that did not reach the finals still has a leaderboard row (`status: dropped`, no rank
and no test score: the race never tested it), with the rung it dropped at, its best validation
score there and the reason, so every surface shows all the methods compared, from this one
definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.store import Store

DROPPED = "dropped"


@dataclass
class MethodRace:
    method: str  # the entry's run name
    scores: list[float | None]  # best validation score per rung reached (None: no candidate finished it)
    out_at: int | None  # the rung (0-based) where its last candidate dropped; None: a finalist
    why: str | None
    finalist: bool


@dataclass
class RaceView:
    experiment: str
    main_metric: str
    plan: dict[str, Any]
    methods: list[MethodRace]  # finalists first, then by how far each got and its score there
    spent: float  # seconds of the race (rungs), and of the finals when they ended
    finals_seconds: float | None
    total_seconds: float | None
    stopped: str | None
    calibration: dict[str, Any] | None = None  # the first run, timed before planning again (a fresh store)


def state(store: Store, experiment: str) -> dict[str, Any] | None:
    from peftlab.tune.race_state import load_state

    return load_state(store.root, experiment)


def view(store: Store, experiment: str, higher: bool = True) -> RaceView | None:
    s = state(store, experiment)
    if s is None or not s.get("rungs"):
        return None
    fin = s.get("finalists") or {}
    by_method: dict[str, list[str]] = {}
    for c in s["candidates"]:
        by_method.setdefault(c["method"], []).append(c["label"])
    out = []
    for method, labels in by_method.items():
        scores: list[float | None] = []
        out_at, why = None, None
        for i, rung in enumerate(s["rungs"]):
            mine = [x for x in labels if x in rung["scores"] or x in rung["dropped"]]
            if not mine:
                break
            vals = [rung["scores"][x] for x in mine if x in rung["scores"]]
            scores.append((max(vals) if higher else min(vals)) if vals else None)
            if method not in fin and not any(x in rung["survivors"] for x in mine):
                out_at = i
                best = max(mine, key=lambda x: rung["scores"].get(x, float("-inf")) * (1 if higher else -1))
                why = rung["dropped"].get(best)
        if out_at is None and s.get("finalists") is not None and method not in fin and scores:
            out_at = len(scores) - 1  # went through its last rung, then cut from the finals for the budget
            last = s["rungs"][out_at]
            why = next((last["dropped"][x] for x in labels if x in last["dropped"]), "not a finalist")
        out.append(MethodRace(method, scores, out_at, why, method in fin))
    sign = 1 if higher else -1
    out.sort(key=lambda m: (not m.finalist, -len(m.scores), -sign * (m.scores[-1] if m.scores and m.scores[-1]
                                                                   is not None else -sign * 1e9), m.method))
    stopped = next((r["stopped"] for r in s["rungs"] if r.get("stopped")), None)
    return RaceView(experiment, s["main_metric"], s["plan"], out, float(s.get("spent") or 0.0),
                    s.get("finals_seconds"), s.get("total_seconds"), stopped, s.get("calibration"))


def dropped_rows(v: RaceView | None, method_of: dict[str, str]) -> list[dict[str, Any]]:
    """Leaderboard rows of the methods the race (`v`, its view) dropped (see the module).
    `method_of`: run name -> method, for the rows' traits."""
    if v is None:
        return []
    n = len(v.plan["steps"])
    rows = []
    for m in v.methods:
        if m.finalist or m.out_at is None:
            continue
        score = m.scores[m.out_at] if m.out_at < len(m.scores) else None
        rows.append({"run": m.method, "method": method_of.get(m.method, m.method), "status": DROPPED,
                     "experiment": v.experiment, "rank": None, "seeds": [], "pending": [],
                     "dropped": {"rung": m.out_at + 1, "rungs": n, "validation": score, "why": m.why},
                     "dropped_text": text(m, n, v.main_metric)})
    return rows


def dropped_methods(v: RaceView | None) -> set[str]:
    """The methods the race dropped: their final runs, if any, are an earlier race's."""
    return {m.method for m in v.methods if not m.finalist and m.out_at is not None} if v else set()


def text(m: MethodRace, rungs: int, main: str) -> str:
    score = m.scores[m.out_at] if m.out_at is not None and m.out_at < len(m.scores) else None
    val = f", validation {main} {score:.2f}" if score is not None else ""
    return f"dropped at rung {(m.out_at or 0) + 1} of {rungs}{val}: {m.why or 'no reason recorded'}"


def fingerprint(store: Store, experiment: str) -> Any:
    """What the leaderboard's cache must notice: the race's state file changing."""
    from peftlab.tune.race_state import state_file

    f = state_file(store.root, experiment)
    return f.stat().st_mtime_ns if f.is_file() else None
