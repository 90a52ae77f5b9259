"""Confidence intervals, paired tests against the best row and rank groups for the leaderboard.

Every done run's test predictions give per-example scores (`example_scores`): sentence ROUGE
(`evaluate.metrics.sentence_scores`), 0/1 correctness, and the raw outputs or labels for the
corpus metrics (BLEU, macro-F1), which are recomputed per resample. A run that stored
`scores.jsonl` at evaluation is read from it; older runs are scored from `predictions.jsonl`,
so intervals exist for every run ever recorded.

Rows are variants: the runs of one method entry, one per seed (`peftlab run --seeds K`); a
single-seed experiment has one run per variant. For each variant and metric: the value (mean
over seeds), a 95% interval (bootstrap over examples, two-level over seeds then examples with
several seeds; `peftlab.stats`), and the std across seeds. On the main metric each variant is
compared with the best on the same test examples (paired permutation test, exact McNemar for
accuracy, approximate randomization for corpus metrics), Holm-corrected, and grouped: rank
group 1 cannot be told apart from the best.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.store import Run

SENTENCE_METRICS = ("rouge1", "rouge2", "rougeL", "accuracy")
CORPUS_METRICS = ("bleu", "macro_f1")
CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass
class ExampleScores:
    """One run's per-example view of its test evaluation."""

    inputs: list[str]
    sentence: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> per-example score (0-100)
    outputs: list[str] | None = None  # generation
    references: list[list[str]] | None = None
    pred: np.ndarray | None = None  # classification: label ids
    gold: np.ndarray | None = None
    n_labels: int = 0


_CACHE: dict[tuple[str, float], ExampleScores | None] = {}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def example_scores(run: Run) -> ExampleScores | None:
    """The run's per-example scores (cached per predictions file and its mtime), or None."""
    path = run.file("predictions")
    if run.status != "done" or path is None or not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = _score(run, _read_jsonl(path))
    return _CACHE[key]


def _refs(p: dict[str, Any]) -> list[str]:
    r = p.get("reference")
    return [str(x) for x in r] if isinstance(r, list) else [str(r or "")]


def _score(run: Run, preds: list[dict[str, Any]]) -> ExampleScores | None:
    stored = run.file("scores")
    rows = _read_jsonl(stored) if stored is not None and stored.is_file() else []
    return scores_of(preds, rows, len((run.info or {}).get("labels") or []))


def scores_of(preds: list[dict[str, Any]], rows: list[dict[str, Any]], n_labels: int = 0) -> ExampleScores | None:
    """Per-example scores of a predictions file (`Prediction.as_dict` rows) and its stored
    per-example scores (`example_scores` rows; rescored here when they do not match)."""
    if not preds:
        return None
    es = ExampleScores(inputs=[str(p.get("input", "")) for p in preds])
    if all("pred_id" in p and "gold_id" in p for p in preds):
        es.pred = np.array([int(p["pred_id"]) for p in preds])
        es.gold = np.array([int(p["gold_id"] or 0) for p in preds])
        es.n_labels = n_labels or int(max(es.pred.max(), es.gold.max()) + 1)
        es.sentence["accuracy"] = 100.0 * (es.pred == es.gold).astype(float)
        return es
    from peftlab.evaluate.metrics import sentence_scores

    es.outputs = [str(p.get("output", "")) for p in preds]
    es.references = [_refs(p) for p in preds]
    if len(rows) != len(preds) or not all("rougeL" in r for r in rows):  # older runs: score them here
        rows = sentence_scores(es.outputs, es.references)
    for m in ("rouge1", "rouge2", "rougeL"):
        es.sentence[m] = np.array([r[m] for r in rows], dtype=float)
    return es


@dataclass
class _Variant:
    name: str
    scores: list[ExampleScores]  # one per done seed with scores

    @property
    def n(self) -> int:
        return len(self.scores[0].inputs)

    def aligned(self, other: _Variant) -> bool:
        return all(s.inputs == self.scores[0].inputs for s in (*self.scores, *other.scores))


def _statistic(metric: str, pool: list[ExampleScores]) -> Any:
    """A corpus statistic over the pooled rows of `pool` (runs concatenated in order)."""
    from peftlab.stats import bleu_statistic, macro_f1_statistic

    if metric == "bleu":
        return bleu_statistic([o for s in pool for o in s.outputs or []], [r for s in pool for r in s.references or []])
    labels = list(range(max(s.n_labels for s in pool)))
    return macro_f1_statistic(np.concatenate([s.pred for s in pool]), np.concatenate([s.gold for s in pool]), labels)


def _has(metric: str, s: ExampleScores) -> bool:
    if metric in SENTENCE_METRICS:
        return metric in s.sentence
    return (s.outputs is not None) if metric == "bleu" else (s.pred is not None)


def interval(metric: str, v: _Variant) -> dict[str, Any] | None:
    """value, ci_low, ci_high, std, n_seeds of one metric of a variant."""
    from peftlab.stats import corpus_ci, corpus_seeds_ci, mean_ci, seeds_ci

    if not v.scores or not all(_has(metric, s) for s in v.scores):
        return None
    k = len(v.scores)
    if metric in SENTENCE_METRICS:
        if k == 1:
            iv = mean_ci(v.scores[0].sentence[metric], confidence=CONFIDENCE)
            return {"value": iv.value, "low": iv.low, "high": iv.high, "std": None, "n_seeds": 1}
        si = seeds_ci([s.sentence[metric] for s in v.scores], confidence=CONFIDENCE)
        return {"value": si.value, "low": si.low, "high": si.high, "std": si.seed_std, "n_seeds": k}
    stat = _statistic(metric, v.scores)
    if k == 1:
        iv = corpus_ci(stat, v.n, confidence=CONFIDENCE, n_resamples=1000)
        return {"value": iv.value, "low": iv.low, "high": iv.high, "std": None, "n_seeds": 1}
    si = corpus_seeds_ci(stat, v.n, k, confidence=CONFIDENCE)
    return {"value": si.value, "low": si.low, "high": si.high, "std": si.seed_std, "n_seeds": k}


def intervals_of(es: ExampleScores, metrics: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """metric -> {value, low, high} (95%) of one evaluation's per-example scores, for every metric
    they support: what the leaderboard shows for a run's test split, for any other scored file."""
    v = _Variant("evaluation", [es])
    out = {}
    for m in metrics or (*SENTENCE_METRICS, *CORPUS_METRICS):
        iv = interval(m, v)
        if iv is not None:
            out[m] = {"value": iv["value"], "low": iv["low"], "high": iv["high"]}
    return out


def paired_p(metric: str, a: _Variant, b: _Variant) -> tuple[float, float | None]:
    """Raw two-sided p-value that variants a and b differ on `metric`, on the same examples, and
    the test's resolution floor (None for an exact test).

    Both trained once: the models are fixed, and the test resamples the test examples (sign-flip
    permutation, exact McNemar for 0/1 correctness, approximate randomization for corpus metrics).
    Either trained over several seeds: the paired hierarchical bootstrap (`stats.two_level_pvalue`),
    which counts the variance between seeds too (README, "Significance over seeds")."""
    from peftlab.stats import paired_corpus_pvalue, paired_pvalue, two_level_corpus_pvalue, two_level_pvalue

    several = len(a.scores) > 1 or len(b.scores) > 1
    if metric in SENTENCE_METRICS:
        xs = np.array([s.sentence[metric] for s in a.scores])
        ys = np.array([s.sentence[metric] for s in b.scores])
        if several:
            return two_level_pvalue(xs, ys)
        x, y = xs[0], ys[0]
        if metric == "accuracy":
            return paired_pvalue(x / 100.0, y / 100.0), None  # 0/1 correctness: exact McNemar
        n_res = 9999
        floor = 2.0 / 2 ** x.size if 2 ** min(x.size, 60) <= n_res else 2.0 / (n_res + 1)
        return paired_pvalue(x, y, n_resamples=n_res), floor
    stat = _statistic(metric, [*a.scores, *b.scores])
    if several:
        return two_level_corpus_pvalue(stat, a.n, len(a.scores), len(b.scores))
    return paired_corpus_pvalue(stat, a.n, n_resamples=2000), 2.0 / 2001


def significance(variants: dict[str, list[Run]], main: str, higher_is_better: bool = True,
                 metrics: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """Per variant: `<metric>_ci_low/_ci_high/_std` for every metric with per-example scores,
    `n_seeds`, and on the main metric `rank_group` and `p_vs_best` (Holm-adjusted; None for
    the best). Variants whose test examples differ from the best's get no group."""
    from peftlab.stats import rank_groups

    built = {name: _Variant(name, [s for s in (example_scores(r) for r in runs) if s is not None])
             for name, runs in variants.items()}
    built = {n: v for n, v in built.items() if v.scores}
    out: dict[str, dict[str, Any]] = {n: {"n_seeds": len(v.scores)} for n, v in built.items()}
    wanted = metrics or (*SENTENCE_METRICS, *CORPUS_METRICS)
    for name, v in built.items():
        for m in wanted:
            iv = interval(m, v)
            if iv is None:
                continue
            out[name][f"{m}_ci_low"], out[name][f"{m}_ci_high"] = iv["low"], iv["high"]
            out[name][f"{m}_std"] = iv["std"]
            out[name][f"{m}_mean"] = iv["value"]
    ranked = [n for n in built if f"{main}_mean" in out[n] and math.isfinite(out[n][f"{main}_mean"])]
    if not ranked:
        return out
    values = [out[n][f"{main}_mean"] for n in ranked]
    best = ranked[int(np.argmax(values) if higher_is_better else np.argmin(values))]
    comparable = [n for n in ranked if built[n].aligned(built[best])]
    groups = rank_groups([out[n][f"{main}_mean"] for n in comparable],
                         lambda i, j: paired_p(main, built[comparable[i]], built[comparable[j]]),
                         higher_is_better=higher_is_better, alpha=ALPHA)
    for n, g in zip(comparable, groups, strict=True):
        out[n]["rank_group"] = g.rank_group
        out[n]["p_vs_best"] = g.p_vs_best
        out[n]["p_vs_best_bound"] = g.p_at_floor
    return out


def floor_tests(variants: dict[str, list[Run]], floor: str | ExampleScores, names: list[str], main: str,
                higher_is_better: bool = True) -> dict[str, dict[str, Any]]:
    """Whether each named variant is significantly better than the floor on the main metric: the
    zero-shot variant (`floor` names it) or a row that is not a run (the majority-class baseline's
    per-example scores). Paired tests as for `p_vs_best` (two-level over seeds where a side has
    several), Holm-corrected across the variants tested. Per variant: `p_vs_floor` (adjusted),
    `p_vs_floor_bound` (at the test's floor: an upper bound) and `beats_floor`."""
    from peftlab.stats import holm

    def built(rs: list[Run]) -> _Variant | None:
        v = _Variant("", [s for s in (example_scores(r) for r in sorted(rs, key=lambda r: r.name)) if s is not None])
        return v if v.scores else None

    base = _Variant("floor", [floor]) if isinstance(floor, ExampleScores) else built(variants.get(floor, []))
    if base is None or not all(_has(main, s) for s in base.scores):
        return {}
    fv = interval(main, base)
    todo = []
    for n in names:
        v = built(variants.get(n, []))
        if v is None or not v.aligned(base) or not all(_has(main, s) for s in v.scores):
            continue
        iv = interval(main, v)
        if iv is None:
            continue
        todo.append((n, v, iv["value"]))
    if not todo or fv is None:
        return {}
    raw = [paired_p(main, v, base) for _, v, _ in todo]
    adj = holm([p for p, _ in raw])
    out = {}
    for (n, _, value), (p, fl), pa in zip(todo, raw, adj, strict=True):
        better = value > fv["value"] if higher_is_better else value < fv["value"]
        out[n] = {"p_vs_floor": pa, "p_vs_floor_bound": fl is not None and p <= fl + 1e-15,
                  "beats_floor": bool(better and pa < ALPHA)}
    return out


def majority_scores(like: ExampleScores, label_id: int) -> ExampleScores:
    """The majority-class baseline's per-example scores on `like`'s test examples."""
    assert like.gold is not None
    pred = np.full_like(like.gold, label_id)
    es = ExampleScores(inputs=list(like.inputs), pred=pred, gold=like.gold.copy(), n_labels=like.n_labels)
    es.sentence["accuracy"] = 100.0 * (pred == like.gold).astype(float)
    return es

