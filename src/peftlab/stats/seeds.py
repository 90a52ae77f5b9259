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


def two_level_pvalue(a: np.ndarray | list, b: np.ndarray | list, n_resamples: int = 9999,
                     seed: int = 0) -> tuple[float, float]:
    """Two-sided p-value that two variants trained over seeds differ, counting the variance
    between seeds as well as between test examples: (p, floor).

    ``a`` (k_a x n) and ``b`` (k_b x n) hold each seed's per-example scores on the same n test
    examples. A replicate draws k_a of a's seeds and k_b of b's with replacement (the seeds of two
    methods are not paired: seed 1 of one has nothing in common with seed 1 of the other), then one
    set of n examples with replacement, shared by both sides (the examples are paired), and takes
    the difference of the seed-averaged means on those examples. This is the hierarchical
    bootstrap of Saravanan, Berman and Sober (2020, "Application of the hierarchical bootstrap to
    multi-level data in neuroscience") on a paired design; the p-value is the percentile-bootstrap
    test (Efron and Tibshirani 1993, ch. 16): twice the share of replicates on the far side of 0,
    with the usual +1 correction, so p < 0.05 exactly when 0 is outside the difference's 95%
    percentile interval, the interval the leaderboard prints. Its floor, 2 / (n_resamples + 1),
    is returned so a p-value at the floor is shown as a bound, not as a number.

    Why not the example-level permutation test alone: it holds the trained models fixed, so a
    method whose seeds disagree by 20 points can look significantly worse than the best on one
    test set although another seed of it beats the best.
    """
    x, y = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if x.shape[1] != y.shape[1] or x.shape[1] == 0:
        raise ValueError(f"two_level_pvalue needs the same examples: {x.shape[1]} vs {y.shape[1]} scores")
    floor = 2.0 / (n_resamples + 1)
    if np.array_equal(x.mean(0), y.mean(0)) and x.shape[0] == y.shape[0] == 1:
        return 1.0, floor
    rng = np.random.default_rng(seed)
    n = x.shape[1]
    diffs = np.empty(n_resamples)
    block = max(1, (1 << 22) // n)
    for start in range(0, n_resamples, block):
        m = min(block, n_resamples - start)
        sa = rng.integers(0, x.shape[0], size=(m, x.shape[0]))
        sb = rng.integers(0, y.shape[0], size=(m, y.shape[0]))
        ex = rng.integers(0, n, size=(m, n))
        xa = x[sa].mean(axis=1)  # m x n: per-example mean over the drawn seeds
        yb = y[sb].mean(axis=1)
        diffs[start:start + m] = (np.take_along_axis(xa, ex, 1) - np.take_along_axis(yb, ex, 1)).mean(axis=1)
    return _bootstrap_p(diffs, n_resamples), floor


def _bootstrap_p(diffs: np.ndarray, n_resamples: int) -> float:
    below, above = int(np.sum(diffs <= 0)), int(np.sum(diffs >= 0))
    return float(min(1.0, 2.0 * (min(below, above) + 1) / (n_resamples + 1)))


def two_level_corpus_pvalue(statistic: Statistic, n: int, k_a: int, k_b: int, n_resamples: int = 1999,
                            seed: int = 0) -> tuple[float, float]:
    """`two_level_pvalue` for a corpus metric (BLEU, macro-F1), recomputed on every replicate.

    The pool holds (k_a + k_b) * n rows: a's seeds first, then b's, each seed's n rows in the test
    order (`statistic(rows)` scores any of them). Returns (p, floor)."""
    if n < 1 or k_a < 1 or k_b < 1:
        raise ValueError("two_level_corpus_pvalue: no examples or no seeds")
    floor = 2.0 / (n_resamples + 1)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples)
    for r in range(n_resamples):
        ex = rng.integers(0, n, size=n)
        sa = rng.integers(0, k_a, size=k_a)
        sb = k_a + rng.integers(0, k_b, size=k_b)
        diffs[r] = (np.mean([statistic(s * n + ex) for s in sa]) - np.mean([statistic(s * n + ex) for s in sb]))
    return _bootstrap_p(diffs, n_resamples), floor
