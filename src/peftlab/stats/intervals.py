"""Bootstrap confidence intervals for a run's main metric.

Three shapes of input, one interval type:

- `mean_ci`: per-example scores whose metric is their mean (sentence ROUGE-L, 0/1
  correctness, per-example loss): scipy's bootstrap over examples.
- `corpus_ci`: a corpus-level metric (BLEU, macro-F1) that must be recomputed on every
  resample, given as ``fn(idx) -> float`` over example indices: scipy's bootstrap over indices.
- `seeds_ci`: one run per seed, each with per-example scores: a two-level bootstrap (seeds,
  then examples within each drawn seed), written here because scipy has none.

Intervals default to BCa (scipy's default: bias- and skew-corrected, which matters for skewed
per-example losses and for proportions near 0 or 1). When BCa cannot be formed (a jackknife
with no spread) the same bootstrap distribution gives a percentile interval instead. A sample
with no spread (n < 2, or every score equal) gets ``low == high == value`` rather than an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["BCa", "percentile", "basic"]

# Bound on the elements of one vectorised resampling block (~32 MB of float64), so that large
# test sets resample in batches instead of allocating n_resamples x n at once.
_BLOCK = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided confidence interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class SeedsInterval(Interval):
    """`Interval` over seeds, plus the spread of the per-seed values (sample std, ddof=1)."""

    seed_std: float
    n_seeds: int


def _as_scores(scores: Sequence[float] | np.ndarray, what: str = "scores") -> np.ndarray:
    x = np.asarray(scores, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{what}: no examples")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: contains NaN or infinite values")
    return x


def _check(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


def _bootstrap(
    data: np.ndarray,
    statistic: Callable[..., float | np.ndarray],
    value: float,
    *,
    vectorized: bool,
    confidence: float,
    n_resamples: int,
    seed: int,
    method: Method,
) -> Interval:
    """scipy.stats.bootstrap, with the degenerate cases turned into a zero-width interval."""
    from scipy import stats

    common = {"vectorized": vectorized, "confidence_level": confidence, "batch": max(1, _BLOCK // data.size)}
    with warnings.catch_warnings():
        # Degenerate distributions are handled below; the warning would only be noise.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        # BCa's acceleration is 0/0 when the jackknife has no spread; the NaN is handled below.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning, r"scipy\.stats\.")
        res = stats.bootstrap(
            (data,),
            statistic,
            n_resamples=n_resamples,
            method=method,
            rng=np.random.default_rng(seed),
            **common,
        )
        if np.ptp(res.bootstrap_distribution) == 0:
            return Interval(value, value, value)
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            # Reuse the same resamples (n_resamples=0) for a percentile interval.
            res = stats.bootstrap(
                (data,), statistic, n_resamples=0, method="percentile", bootstrap_result=res, **common
            )
            low, high = res.confidence_interval
    return Interval(value, float(low), float(high))


def mean_ci(
    scores: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: Method = "BCa",
) -> Interval:
    """Interval for the mean of per-example scores, by bootstrap over examples."""
    _check(confidence, n_resamples)
    x = _as_scores(scores)
    value = float(np.mean(x))
    if x.size < 2 or np.all(x == x[0]):
        return Interval(value, value, value)
    return _bootstrap(
        x,
        np.mean,
        value,
        vectorized=True,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )


def corpus_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: Method = "BCa",
) -> Interval:
    """Interval for a corpus-level metric, recomputed on each resample of the n example indices.

    ``statistic(idx)`` scores the examples ``idx`` (an int array, repeats allowed); see
    `bleu_statistic` and `macro_f1_statistic`. Averaging sentence scores instead would give
    the interval of a different metric.
    """
    _check(confidence, n_resamples)
    if n < 1:
        raise ValueError("corpus_ci: no examples")
    value = float(statistic(np.arange(n)))
    if n < 2:
        return Interval(value, value, value)

    def on_indices(idx: np.ndarray) -> float:
        return float(statistic(np.asarray(idx, dtype=np.intp)))

    return _bootstrap(
        np.arange(n),
        on_indices,
        value,
        vectorized=False,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=method,
    )


def _resampled_means(rng: np.random.Generator, x: np.ndarray, m: int) -> np.ndarray:
    """Means of m bootstrap resamples (with replacement, size len(x)) of x, in bounded blocks."""
    out = np.empty(m)
    rows = max(1, _BLOCK // x.size)
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        out[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    return out


def seeds_ci(
    per_seed_scores: Sequence[Sequence[float] | np.ndarray],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> SeedsInterval:
    """Interval for the mean over seeds of each seed's mean score, by a two-level bootstrap.

    Procedure (percentile interval), for each of the ``n_resamples`` replicates:

    1. draw S seeds with replacement from the S runs;
    2. for each drawn seed, independently draw that run's n examples with replacement and take
       their mean (a seed drawn twice gets two independent inner resamples);
    3. the replicate is the mean of those S means.

    ``value`` is the mean of the per-seed means; ``low``/``high`` are the (1 - confidence)/2 and
    (1 + confidence)/2 quantiles of the replicates; ``seed_std`` is the sample std (ddof=1) of
    the per-seed means (0 for one seed). The outer level carries the seed-to-seed variance,
    the inner one the test-set sampling. With few seeds (< ~5) the outer level cannot see
    much of the seed variance and the interval tends to be too narrow. Runs may have different
    numbers of examples.
    """
    _check(confidence, n_resamples)
    runs = [_as_scores(s, f"seed {i}") for i, s in enumerate(per_seed_scores)]
    if not runs:
        raise ValueError("seeds_ci: no seeds")
    means = np.array([r.mean() for r in runs])
    value = float(means.mean())
    seed_std = float(means.std(ddof=1)) if len(runs) > 1 else 0.0
    first = runs[0][0]
    if all(np.all(r == first) for r in runs):
        return SeedsInterval(value, value, value, seed_std, len(runs))

    rng = np.random.default_rng(seed)
    n_seeds = len(runs)
    chosen = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    inner = np.empty((n_resamples, n_seeds))
    for slot in range(n_seeds):
        for s, run in enumerate(runs):
            rows = np.flatnonzero(chosen[:, slot] == s)
            inner[rows, slot] = _resampled_means(rng, run, rows.size)
    replicates = inner.mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return SeedsInterval(value, float(low), float(high), seed_std, n_seeds)
