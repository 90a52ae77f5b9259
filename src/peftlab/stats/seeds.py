"""Corpus metrics over several seeds: intervals and paired tests on a pool of rows.

A variant trained with k seeds and tested on the same n examples is laid out as a pool of
k*n rows: seed s holds rows s*n .. s*n+n-1, one per example in the test order. `statistic(idx)`
scores any rows of the pool (see `peftlab.stats.corpus`: BLEU, macro-F1), so a corpus metric
is recomputed on each resample instead of averaged from sentence scores. The variant's value is
the mean over its seeds of the metric of each seed's rows.

These generalise `corpus_ci` and `paired_corpus_pvalue` (k = 1) the way `seeds_ci`
generalises `mean_ci`; scipy has no multi-level bootstrap, and the paired test below runs
through `scipy.stats.permutation_test`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .intervals import SeedsInterval

Statistic = Callable[[np.ndarray], float]


def seed_values(statistic: Statistic, n: int, k: int) -> np.ndarray:
    """The metric of each seed's rows."""
    return np.array([statistic(np.arange(s * n, (s + 1) * n)) for s in range(k)])


def corpus_seeds_ci(statistic: Statistic, n: int, k: int, confidence: float = 0.95,
                    n_resamples: int = 1000, seed: int = 0) -> SeedsInterval:
    """Two-level bootstrap of a corpus metric: each replicate draws k seeds with replacement,
    then n examples with replacement within each drawn seed, and averages the metric of those
    resamples over the drawn seeds. Percentile interval; ``seed_std`` is the sample std of the
    per-seed values (ddof=1)."""
    if n < 1 or k < 1:
        raise ValueError("corpus_seeds_ci: no examples or no seeds")
    per_seed = seed_values(statistic, n, k)
    value = float(per_seed.mean())
    std = float(per_seed.std(ddof=1)) if k > 1 else 0.0
    if n < 2:
        return SeedsInterval(value, value, value, std, k)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_resamples)
    for b in range(n_resamples):
        seeds = rng.integers(0, k, size=k)
        reps[b] = np.mean([statistic(s * n + rng.integers(0, n, size=n)) for s in seeds])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return SeedsInterval(value, float(min(low, value)), float(max(high, value)), std, k)


def paired_corpus_seeds_pvalue(statistic: Statistic, n: int, k: int, n_resamples: int = 2000,
                               seed: int = 0) -> float:
    """Two-sided approximate-randomization p-value that two variants' corpus metric differs.

    The pool holds 2k*n rows: variant A's k seeds first (rows 0 .. k*n-1), then B's k seeds,
    each seed in the test order. A permutation swaps A's and B's rows of the same examples in
    every seed at once (an example belongs to one side or the other), and the statistic is the
    difference of the seed-averaged metrics."""
    if n < 1 or k < 1:
        raise ValueError("paired_corpus_seeds_pvalue: no examples or no seeds")
    from scipy.stats import permutation_test

    offsets = np.arange(k)[:, None] * n

    def side(codes: np.ndarray) -> float:  # code i: example i of A; n + i: example i of B
        codes = np.asarray(codes, dtype=np.intp)
        b = codes >= n
        rows = offsets + np.where(b, codes - n, codes)[None, :] + np.where(b, k * n, 0)[None, :]
        return float(np.mean([statistic(r) for r in rows]))

    res = permutation_test((np.arange(n), np.arange(n, 2 * n)), lambda x, y: side(x) - side(y),
                           permutation_type="samples", vectorized=False, n_resamples=n_resamples,
                           alternative="two-sided", rng=np.random.default_rng(seed))
    return float(res.pvalue)
