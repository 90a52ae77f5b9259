"""The leaderboard: one row per run, ranked by the task's main metric, with its uncertainty.

Row keys are stable (the web service and JSON consumers rely on them): method, run, status,
trainable_params, trainable_percent, peak_memory_mb, train_seconds, eval_seconds,
train_tokens_per_second, adapter_bytes, then every metric by name; and from the per-example
scores (`report.significance`): `<metric>_ci_low`, `<metric>_ci_high` (95% bootstrap
interval) and `<metric>_std` (across seeds) for every metric that has them, `n_seeds`,
`rank_group` (1: cannot be told apart from the best row) and `p_vs_best` (paired test on the
same test examples, Holm-corrected across rows).

A row is a variant: the runs of one method entry, one per seed when the experiment has several
(`seeds:`); its metrics are the means over seeds. Tuning trials (`tuning:`) are not rows.

Classification experiments get one more row, `majority-class` (`baseline: true`, status
`baseline`, no rank): always predicting the most frequent training label, scored on the same
test examples with the same metrics (`majority_baseline`); it is not a run and trains nothing.
A run whose test predictions collapse onto one class (`COLLAPSE_SHARE` of them or more, and
clearly more than that class's share of the test set) carries `collapsed` ("97% 'neutral'").
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from peftlab.store import Run, Store
from peftlab.tasks.spec import SPECS, main_metric

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
           **{k: None for k in COST_KEYS}, **m, "trainable_params": 0, "trainable_percent": 0.0,
           "majority_label": names[top], "majority_train_share": 100.0 * counts[top] / max(1, len(data.train)),
           "test_examples": len(gold),
           "note": f"always predicts {names[top]!r}, the most frequent training label "
                   f"({100.0 * counts[top] / max(1, len(data.train)):.0f}% of {len(data.train)} training examples); "
                   "a baseline row, not a run"}
    if len(_MAJORITY_CACHE) > 64:
        _MAJORITY_CACHE.clear()
    _MAJORITY_CACHE[key] = out
    return out


def collapse(predictions: list[dict[str, Any]] | None, labels: list[str] | None) -> str | None:
    """Why a classifier's test predictions collapse onto one class ("97% of test predictions are
    'neutral', against 59% of the test labels"), or None: at least
    COLLAPSE_SHARE of them, and 10 points more than that class's share of the test labels."""
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
    return f"{100 * share:.0f}% of test predictions are {name!r}, against {100 * gold:.0f}% of the test labels"


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
        _COLLAPSE_CACHE[key] = collapse(preds, (run.info or {}).get("labels"))
    return _COLLAPSE_CACHE[key]


def rows(store: Store, experiment: str, significance: bool = True, baseline: bool = True) -> list[dict[str, Any]]:
    exp = store.experiment(experiment)
    if exp is None:
        names = [e["name"] for e in store.experiments()]
        raise KeyError(f"no experiment {experiment!r} in {store.root}; known: {', '.join(names) or '(none)'}")
    spec = SPECS.get(exp["task"])
    main = main_metric(exp["task"])
    higher = spec.higher_is_better if spec else True
    variants: dict[str, list[Run]] = {}
    for r in store.runs(experiment):
        if not is_trial(r):
            variants.setdefault(variant_of(r), []).append(r)
    out = [_aggregate(name, runs) for name, runs in variants.items()]
    if spec is not None and not spec.generative and spec.text_input:
        for r in out:
            rs_ = [x for x in variants[r["run"]] if x.status == "done"]
            flags = [c for x in rs_ if (c := _collapsed(x))]
            if flags:
                r["collapsed"] = flags[0]
    if significance:
        from peftlab.report.significance import significance as stats

        extra = stats({n: [r for r in rs if r.status == "done"] for n, rs in variants.items()}, main, higher)
        for r in out:
            r.update({k: v for k, v in extra.get(r["run"], {}).items() if not k.endswith("_mean")})

    def key(r: dict[str, Any]) -> tuple:
        v = r.get(main)
        ok = r["status"] == "done" and isinstance(v, int | float) and not math.isnan(v)
        return (0 if ok else 1, -(v if ok else 0.0) if higher else (v if ok else 0.0), r["run"])

    out.sort(key=key)
    for rank, r in enumerate(out, start=1):
        r["rank"] = rank if r["status"] == "done" else None
        r["main_metric"] = main
    maj = majority_baseline(store, experiment) if baseline else None
    if maj is not None:
        at = next((i for i, r in enumerate(out) if r["status"] != "done" or not isinstance(r.get(main), int | float)
                   or (r[main] < maj[main] if higher else r[main] > maj[main])), len(out))
        out.insert(at, {**maj, "rank": None, "main_metric": main})
    return out


# One format per column, so a column reads at a glance (metrics are on a 0-100 scale).
COLUMN_FORMATS = {"eval_loss": "{:.4f}", "trainable_params": "{:,.0f}", "trainable_percent": "{:.3g}",
                  "peak_memory_mb": "{:,.0f}", "train_seconds": "{:,.1f}", "eval_seconds": "{:,.1f}",
                  "train_tokens_per_second": "{:,.1f}", "adapter_bytes": "{:,.0f}", "p_vs_best": "{:.2g}"}


def _fmt(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return COLUMN_FORMATS.get(col, "{:.2f}").format(v)


def _with_ci(r: dict[str, Any], metric: str) -> str:
    v = _fmt(metric, r.get(metric))
    lo, hi = r.get(f"{metric}_ci_low"), r.get(f"{metric}_ci_high")
    return f"{v} [{lo:.2f}, {hi:.2f}]" if v != "-" and lo is not None and hi is not None else v


def render(rs: list[dict[str, Any]], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(rs, indent=2)
    metric_cols = [m for m in METRIC_ORDER if any(m in r for r in rs)]
    stat_cols = [c for c in ("rank_group", "p_vs_best", "n_seeds") if any(r.get(c) is not None for r in rs)]
    cols = ["rank", "run", "method", "status", *metric_cols, *stat_cols, *COST_KEYS]
    if fmt == "csv":
        buf = io.StringIO()
        extra = sorted({k for r in rs for k in r} - set(cols))
        w = csv.DictWriter(buf, fieldnames=cols + extra)
        w.writeheader()
        for r in rs:
            w.writerow(r)
        return buf.getvalue()
    from tabulate import tabulate

    main = rs[0]["main_metric"] if rs else None
    short = {"trainable_params": "trainable", "trainable_percent": "train%", "peak_memory_mb": "peak MB",
             "train_seconds": "train s", "eval_seconds": "eval s", "train_tokens_per_second": "tok/s",
             "adapter_bytes": "adapter B", "rank_group": "group", "p_vs_best": "p vs best", "n_seeds": "seeds"}
    if main:
        short[main] = f"{main} [95% CI]"
    table = [[_with_ci(r, c) if c == main else _fmt(c, r.get(c)) if c not in ("rank", "rank_group", "n_seeds")
              else ("-" if r.get(c) is None else str(r[c])) for c in cols] for r in rs]
    text = tabulate(table, headers=[short.get(c, c) for c in cols], tablefmt="simple", disable_numparse=True)
    errors = [f"  {r['run']}: {r['status']}: {r['error']}" for r in rs if r.get("error")]
    if rs:
        text += f"\n(ranked by {main}, higher is better; group 1: not significantly different from the best, " \
                "paired test on the same test examples, Holm-corrected)"
    return text + ("\n" + "\n".join(errors) if errors else "")
