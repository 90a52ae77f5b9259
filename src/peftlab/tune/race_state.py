"""A race's state: one object, `STORE/launch/<experiment>.race.json`, written whole after each
run and decision (its plan, candidates, each rung's scores and decisions, the seconds spent), so
a killed race resumes where it was; the report and the leaderboard read it. And the few words the
race says of itself."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from peftlab.config.schema import ExperimentConfig, MethodEntry

VERSION = 1


def state_file(store_root: Path, experiment: str) -> Path:
    return Path(store_root) / "launch" / f"{experiment}.race.json"


def load_state(store_root: Path, experiment: str) -> dict[str, Any] | None:
    try:
        out = json.loads(state_file(store_root, experiment).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) and out.get("version") == VERSION else None


def save(store_root: Path, state: dict[str, Any]) -> None:
    """Write the state whole or not at all: a kill mid-write leaves the last one."""
    f = state_file(store_root, state["experiment"])
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, f)


def race_key(cfg: ExperimentConfig, trained: list[MethodEntry]) -> str:
    """What makes a race the same race: the experiment as its runs train, the methods, the tuning
    section (budget included) and the seeds. Another key starts a new race (finished runs of the
    same configuration are still reused: the store skips them)."""
    body = {"experiment": cfg.model_dump(mode="json", exclude={"methods", "resources"}),
            "methods": [e.model_dump(mode="json") for e in trained]}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


class Clock:
    """Seconds of the budget spent: those of earlier attempts (the state's) and this one's."""

    def __init__(self, before: float, started: float) -> None:
        self.before, self.started = before, started

    def spent(self) -> float:
        return self.before + time.time() - self.started


def rung_run_name(cand: dict[str, Any], rung: int) -> str:
    """The store run of a candidate's rung: `<run>.r<rung>.c<n>`."""
    return f"{cand['method']}.r{rung}.c{cand['index']}"


def finish(store_root: Path, experiment: str, finals_started: float) -> None:
    """Record the finals' seconds, and so the whole race's, once they ended."""
    state = load_state(store_root, experiment)
    if state is None:
        return
    state["finals_seconds"] = time.time() - finals_started
    state["total_seconds"] = float(state["spent"]) + state["finals_seconds"]
    save(store_root, state)


def describe(state: dict[str, Any], n_methods: int) -> str:
    p = state["plan"]
    return (f"race: {n_methods} method{'s' if n_methods != 1 else ''} x {p['candidates']} configuration{'s' if p['candidates'] > 1 else ''} "
            f"within {minutes(p['budget'])}; rungs of {', '.join(map(str, p['steps']))} steps on the validation split, "
            f"up to {p['caps']} candidates, then up to {p['finalists']} finalists x {p['seeds']} "
            f"seed{'s' if p['seeds'] > 1 else ''} (expected {minutes(p['expected'])})")


def said(rung: dict[str, Any], n: int, main: str) -> str:
    top = rung["survivors"][:1]
    lead = f"; leader {top[0]} ({main} {rung['scores'][top[0]]:.2f})" if top else ""
    if top and rung.get("order") == "eval_loss":
        lead = f"; first by validation loss {top[0]} ({rung['losses'][top[0]]:.4f}, {main} {rung['scores'][top[0]]:.2f})"
    return (f"race: rung {rung['rung'] + 1}/{n} done in {minutes(rung['seconds'])}: {len(rung['survivors'])} go on, "
            f"{len(rung['dropped'])} dropped{lead}" + (f"; {rung['stopped']}" if rung.get("stopped") else ""))


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
