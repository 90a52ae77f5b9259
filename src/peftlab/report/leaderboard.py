"""The leaderboard: one row per method configuration, ranked by the task's main metric, with its
uncertainty, its floors and its flags. Every surface (terminal, JSON/CSV, the HTML report, the
web pages, Export and the model card) reads these rows, and the recommendation
(`report.recommend`) is made from them alone.

Row keys are stable (the web service and JSON consumers rely on them): method, run, status, trainable_params,
trainable_percent, peak_memory_mb, train_seconds, eval_seconds, train_tokens_per_second, adapter_bytes, then
every metric by name; and from the per-example scores (`report.significance`): `<metric>_ci_low`,
`<metric>_ci_high` (95% bootstrap interval) and `<metric>_std` (across seeds) for every metric that has them,
`n_seeds`, `rank_group` (1: cannot be told apart from the best row), `p_vs_best` (paired test on the same test
examples, over seeds too where a row has several, Holm-corrected across rows) and `p_vs_best_bound` (true when
that p-value is at its test's resolution floor: an upper bound).

A row is a variant: the runs of one method entry, one per seed when the experiment has several
(`seeds:`); its metrics are the means over seeds, `seeds` lists each seed's own values and
`representative` names the seed whose main metric is the median (the one to try or export).
Tuning trials and a race's rung runs are never rows; a method a race dropped is a row with
`status: dropped` and no rank (`report.race`). Traits of the method travel with the row (`family`,
`trains`, `is_baseline`, `is_full`, `untrained_head`, `mergeable`), and so do its flags
(`collapsed`, `health_problems`) and its floor: `floor` (what it must beat: the majority-class
row of classification, the zero-shot row of generation), `p_vs_floor`, `beats_floor`.

Classification experiments get one more row, `majority-class` (`baseline: true`, status
`baseline`, no rank): always predicting the most frequent training label, scored on the same
test examples with the same metrics (`baselines.majority_baseline`); it is not a run and trains
nothing. A run whose test predictions collapse onto one class carries `collapsed`. The rows are
computed once per set of finished runs and kept in the store (`cache/leaderboard-*.json`), so
every surface prints the same digits.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from peftlab.report import forgetting, race
from peftlab.report.baselines import (  # noqa: F401 - re-exported: the rows' flags
    COLLAPSE_SHARE,
    MAJORITY,
    collapse,
    has_majority_baseline,
    majority_baseline,
)
from peftlab.store import Run, Store
from peftlab.tasks.spec import SPECS, main_metric

COST_KEYS = ("trainable_params", "trainable_percent", "peak_memory_mb", "train_seconds", "train_cpu_seconds",
             "eval_seconds", "train_tokens_per_second", "adapter_bytes")
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


def variant_of(run: Run) -> str:
    """The leaderboard row a run belongs to: its method entry (seeds of one entry share it)."""
    return str((run.config or {}).get("variant") or run.name)


def is_trial(run: Run) -> bool:
    return (run.config or {}).get("role") == "trial"


def _aggregate(name: str, runs: list[Run]) -> dict[str, Any]:
    """One row for the seeds of a variant: means of the done runs' metrics and costs."""
    if len(runs) == 1:
        r = row(runs[0])
        r["run"] = name if (runs[0].config or {}).get("variant") else r["run"]
        return r
    done = [x for x in runs if x.status == "done"]
    base = row(done[0] if done else runs[0])
    base.update(run=name, runs=[x.name for x in runs], run_ids=[x.id for x in runs],
                status="done" if done else base["status"])
    for key in {k for x in done for k in (x.metrics or {})} | set(COST_KEYS):
        vals = [v for x in done for v in [((x.metrics or {}) | (x.cost or {})).get(key)]
                if isinstance(v, int | float) and not isinstance(v, bool)]
        if vals:
            base[key] = sum(vals) / len(vals)
    return base


LEADERBOARD_VERSION = 6  # bump when the rows' definition changes: cached rows are recomputed


def _comparable(store: Store, names: list[str]) -> list[dict[str, Any]]:
    """The experiments to rank together: they must share the task and main metric."""
    exps = []
    for n in names:
        exp = store.experiment(n)
        if exp is None:
            known = [e["name"] for e in store.experiments()]
            raise KeyError(f"no experiment {n!r} in {store.root}; known: {', '.join(known) or '(none)'}")
        exps.append(exp)
    tasks = {e["name"]: e["task"] for e in exps}
    if len(set(tasks.values())) > 1 or len({main_metric(t) for t in tasks.values()}) > 1:
        from peftlab.errors import PeftlabError

        what = ", ".join(f"{n} is {t} (ranked by {main_metric(t)})" for n, t in tasks.items())
        raise PeftlabError(f"these experiments cannot be ranked together: {what}. Compare experiments of one task; "
                           "open the others' reports apart")
    return exps


def _fingerprint(store: Store, exps: list[dict[str, Any]], flags: tuple) -> str:
    import hashlib

    parts: list[Any] = [LEADERBOARD_VERSION, flags]
    for e in exps:
        parts.append([e["name"], e.get("updated_at"), e.get("config"), race.fingerprint(store, e["name"])])
        for r in store.runs(e["name"]):
            p = r.file("predictions")
            parts.append([r.id, r.name, r.status, r.finished_at, r.config_hash, r.metrics, r.cost,
                          (r.info or {}).get("health"), (r.info or {}).get("labels"),
                          p.stat().st_mtime_ns if p is not None and p.is_file() else None])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _cache_path(store: Store, names: list[str]) -> Path:
    import hashlib

    return store.root / "cache" / f"leaderboard-{hashlib.sha256(chr(0).join(names).encode()).hexdigest()[:16]}.json"


def rows(store: Store, experiment: str | list[str], significance: bool = True,
         baseline: bool = True) -> list[dict[str, Any]]:
    """The ranked rows of one experiment, or of several of one task (`peftlab compare`; their rows
    are named `experiment/variant`). Read from the store's cache when no run changed since."""
    names = [experiment] if isinstance(experiment, str) else list(dict.fromkeys(experiment))
    exps = _comparable(store, names)
    fp = _fingerprint(store, exps, (significance, baseline))
    path = _cache_path(store, names)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("fingerprint") == fp:
            return cached["rows"]
    except (OSError, ValueError, AttributeError):
        pass
    out = _compute(store, exps, significance, baseline)
    try:  # one computation per run set: written whole (a reader never sees half a file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": fp, "rows": out}, default=_json_default), encoding="utf-8")
        os.replace(tmp, path)
        out = json.loads(path.read_text(encoding="utf-8"))["rows"]  # what every later reader gets
    except OSError:
        pass  # a read-only store: computed each time, from the same deterministic statistics
    return out


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v)}")


def _seed_row(run: Run, main: str) -> dict[str, Any]:
    r = {"run": run.name, "run_id": run.id, "status": run.status, "seed": (run.config or {}).get("seed")}
    r.update({k: v for k, v in (run.metrics or {}).items() if isinstance(v, int | float)})
    r.update({k: (run.cost or {}).get(k) for k in COST_KEYS})
    return r


def _traits(r: dict[str, Any], task: str) -> None:
    from peftlab.methods import REGISTRY

    m = REGISTRY.get(r["method"])
    s = SPECS.get(task)
    r["family"] = m.family if m else ""
    r["trains"] = m.trains if m else True
    r["is_baseline"] = bool(m and m.is_baseline)
    r["is_full"] = bool(m and m.is_full)
    r["untrained_head"] = bool(r["is_baseline"] and s is not None and not s.generative)
    r["mergeable"] = bool(m and m.mergeable)


def _representative(r: dict[str, Any], main: str, higher: bool) -> str | None:
    """The seed whose main metric is the median of the row's seeds (the lower middle of an even
    count, by the metric's direction): the run to try, export or show as the row's model."""
    done = [s for s in r["seeds"] if s["status"] == "done" and isinstance(s.get(main), int | float)]
    if not done:
        return None
    order = sorted(done, key=lambda s: (-s[main] if higher else s[main], s["run"]))
    return order[(len(order) - 1) // 2]["run"] if len(order) > 1 else order[0]["run"]


def _compute(store: Store, exps: list[dict[str, Any]], significance: bool, baseline: bool) -> list[dict[str, Any]]:
    from peftlab.report.baselines import _collapsed

    several = len(exps) > 1
    task = exps[0]["task"]
    spec = SPECS.get(task)
    main = main_metric(task)
    higher = spec.higher_is_better if spec else True
    variants: dict[str, list[Run]] = {}
    exp_of: dict[str, str] = {}
    races = {e["name"]: race.view(store, e["name"], higher) for e in exps}
    tried: dict[str, dict[str, str]] = {e["name"]: {} for e in exps}  # a trial's variant -> method
    for e in exps:
        gone = race.dropped_methods(races[e["name"]])  # final runs of an earlier race: not this one's
        for r in store.runs(e["name"]):
            if is_trial(r):
                tried[e["name"]][variant_of(r)] = r.method
            elif variant_of(r) not in gone:
                key = f"{e['name']}/{variant_of(r)}" if several else variant_of(r)
                variants.setdefault(key, []).append(r)
                exp_of[key] = e["name"]
    for rs_ in variants.values():
        rs_.sort(key=lambda x: x.name)
    out = []
    for name, rs_ in variants.items():
        r = _aggregate(name, rs_)
        r["run"] = name
        r["experiment"] = exp_of[name]
        r["seeds"] = [_seed_row(x, main) for x in rs_]
        r["pending"] = [x.name for x in rs_ if x.status in ("queued", "running")]
        r["representative"] = _representative(r, main, higher)
        _traits(r, task)
        if spec is not None:
            forgetting.annotate(r, rs_, spec.generative)
        done = [x for x in rs_ if x.status == "done"]
        busy = [_busy(x) for x in done]
        if any(busy):
            r["timed_under_load"] = max(b for b in busy if b)
        health = [h for x in done if (h := (x.info or {}).get("health")) and not h.get("healthy", True)]
        r["health_problems"] = list(dict.fromkeys(p for h in health for p in h.get("problems", [])))
        if spec is not None and not spec.generative and spec.text_input:
            flags = [c for x in done if (c := _collapsed(x))]
            if flags:
                r["collapsed"] = flags[0] if len(done) == 1 else f"{len(flags)} of {len(done)} seeds: {flags[0]}"
        out.append(r)
    majors = {e["name"]: majority_baseline(store, e["name"]) for e in exps} if baseline else {}
    if significance:
        from peftlab.report.significance import significance as stats

        done_of = {n: [r for r in rs_ if r.status == "done"] for n, rs_ in variants.items()}
        extra = stats(done_of, main, higher)
        for r in out:
            r.update({k: v for k, v in extra.get(r["run"], {}).items() if not k.endswith("_mean")})
        _floors(out, done_of, majors, main, higher)

    def key(r: dict[str, Any]) -> tuple:
        v = r.get(main)
        ok = r["status"] == "done" and isinstance(v, int | float) and not math.isnan(v)
        return (0 if ok else 1, -(v if ok else 0.0) if higher else (v if ok else 0.0), r["run"])

    out.sort(key=key)
    for rank, r in enumerate(out, start=1):
        r["rank"] = rank if r["status"] == "done" else None
        r["main_metric"] = main
    for e in exps:
        maj = majors.get(e["name"])
        if maj is None:
            continue
        maj = {**{k: None for k in COST_KEYS}, **maj, "experiment": e["name"], "rank": None, "main_metric": main}
        if several:
            maj["run"] = f"{e['name']}/{maj['run']}"
        at = next((i for i, r in enumerate(out) if r["status"] != "done" or not isinstance(r.get(main), int | float)
                   or (r[main] < maj[main] if higher else r[main] > maj[main])), len(out))
        out.insert(at, maj)
    for e in exps:  # the methods a race dropped: a row each, after the ranked ones
        for d in race.dropped_rows(races[e["name"]], tried[e["name"]]):
            out.append({**d, "run": f"{e['name']}/{d['run']}" if several else d["run"], "main_metric": main})
            _traits(out[-1], task)
    return out


def _busy(run: Run) -> float | None:
    """The load average a run trained under, when other jobs shared its CPUs (a load above its
    own threads by more than one): its wall-clock times are not comparable with other runs'."""
    c = run.cost or {}
    loads = [v for k in ("train_start", "train_end") if isinstance(v := (c.get("load_avg") or {}).get(k), int | float)]
    own = max(int(c.get("threads") or 1), 1)
    return max(loads) if loads and max(loads) > own + 1 else None


def _floors(out: list[dict[str, Any]], done_of: dict[str, list[Run]], majors: dict[str, Any], main: str,
            higher: bool) -> None:
    """Each trained row's floor test: significantly better than the majority-class row
    (classification) or the zero-shot row (generation) of its experiment."""
    from peftlab.report.significance import example_scores, floor_tests, majority_scores

    for exp in dict.fromkeys(r["experiment"] for r in out):
        mine = [r for r in out if r["experiment"] == exp and r["trains"] and r["status"] == "done"]
        maj = majors.get(exp)
        zero = next((r for r in out if r["experiment"] == exp and r["is_baseline"] and r["status"] == "done"), None)
        floor: Any = None
        if maj is not None:
            like = next((s for r in mine for x in done_of[r["run"]] if (s := example_scores(x)) is not None), None)
            floor = majority_scores(like, int(maj["majority_id"])) if like is not None and like.gold is not None \
                else None
            label = MAJORITY
        elif zero is not None:
            floor, label = zero["run"], zero["run"]
        if floor is None:
            continue
        tests = floor_tests(done_of, floor, [r["run"] for r in mine], main, higher)
        for r in mine:
            r["floor"] = label
            r.update(tests.get(r["run"], {"beats_floor": None}))
