"""Paired two-sided tests that two runs scored on the same examples differ.

- Continuous per-example scores: a paired permutation (sign-flip) test of the mean
  difference, `scipy.stats.permutation_test(..., permutation_type="samples")`; exact when
  2**n <= n_resamples.
- 0/1 correctness: exact McNemar, `scipy.stats.binomtest` on the discordant pairs.
- Corpus metrics (BLEU, macro-F1): paired approximate randomization, the test of sacrebleu's
  ``--paired ar``, run by the same scipy permutation test on the corpus statistic: each
  permutation swaps the two runs' outputs on a random subset of examples.

Why not `sacrebleu.significance.PairedTest` for BLEU: its p-value counts only permuted
differences strictly greater than the observed one (``_compute_p_value``, inherited from
MultEval), so ties are never counted. Two identical systems, or two that differ on one sentence,
get p = 1/(n_samples + 1) (checked with sacrebleu 2.6: 0.001 for both at 1000 trials), a spurious
"significant" result; scipy counts ties and gives p = 1 there. BLEU itself still comes from
sacrebleu (`bleu_statistic`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from .corpus import bleu_statistic

Kind = Literal["auto", "permutation", "mcnemar"]

_BLOCK = 1 << 22  # elements per vectorised permutation block, as in intervals


def _pair(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired test needs the same examples: {x.size} vs {y.size} scores")
    if x.size == 0:
        raise ValueError("paired test: no examples")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("paired test: scores contain NaN or infinite values")
    return x, y


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def mcnemar_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar: under H0 each discordant example favours a or b with probability 1/2."""
    from scipy.stats import binomtest

    a_only = int(np.sum((a == 1) & (b == 0)))
    discordant = a_only + int(np.sum((a == 0) & (b == 1)))
    if discordant == 0:
        return 1.0
    return float(binomtest(a_only, discordant, p=0.5, alternative="two-sided").pvalue)


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def paired_pvalue(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    kind: Kind = "auto",
    n_resamples: int = 9999,
    seed: int = 0,
) -> float:
    """Two-sided p-value that runs a and b (scores on the same examples, same order) differ.

    ``kind="auto"`` picks McNemar when both runs are all 0/1, else the permutation test.
    Runs with equal scores on every example get p = 1, and so does a single example (its
    two sign flips give +d and -d: no evidence either way).
    """
    x, y = _pair(a, b)
    if kind == "auto":
        kind = "mcnemar" if _is_binary(x) and _is_binary(y) else "permutation"
    if kind == "mcnemar":
        if not (_is_binary(x) and _is_binary(y)):
            raise ValueError("McNemar needs 0/1 correctness scores")
        return mcnemar_pvalue(x, y)
    if kind != "permutation":
        raise ValueError(f"unknown paired test kind {kind!r}")
    if x.size < 2 or np.array_equal(x, y):
        return 1.0
    from scipy.stats import permutation_test

    res = permutation_test(
        (x, y),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=max(1, _BLOCK // x.size),
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def paired_corpus_pvalue(
    statistic: Callable[[np.ndarray], float], n: int, n_resamples: int = 2000, seed: int = 0
) -> float:
    """Two-sided approximate-randomization p-value for a corpus metric of two runs.

    ``statistic(idx)`` scores rows of a pool of 2n: rows 0..n-1 are run A's outputs on the n
    examples, rows n..2n-1 run B's on the same examples in the same order. Build it with the
    `peftlab.stats.corpus` helpers on the concatenated runs, e.g.
    ``macro_f1_statistic(np.r_[pred_a, pred_b], np.r_[gold, gold], labels)``.
    Each permutation swaps A's and B's rows on a random subset of examples.
    """
    if n < 1:
        raise ValueError("paired_corpus_pvalue: no examples")
    from scipy.stats import permutation_test

    def diff(x: np.ndarray, y: np.ndarray) -> float:
        return statistic(np.asarray(x, dtype=np.intp)) - statistic(np.asarray(y, dtype=np.intp))

    res = permutation_test(
        (np.arange(n), np.arange(n, 2 * n)),
        diff,
        permutation_type="samples",
        vectorized=False,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def paired_bleu_pvalue(
    outputs_a: Sequence[str],
    outputs_b: Sequence[str],
    references: Sequence[Sequence[str]],
    n_resamples: int = 2000,
    seed: int = 0,
) -> float:
    """Two-sided approximate-randomization p-value that two systems' corpus BLEU differ."""
    if len(outputs_a) != len(outputs_b):
        raise ValueError(f"paired BLEU needs the same examples: {len(outputs_a)} vs {len(outputs_b)} outputs")
    if list(outputs_a) == list(outputs_b):
        return 1.0
    n = len(outputs_a)
    pooled = bleu_statistic([*outputs_a, *outputs_b], [*references, *references])
    return paired_corpus_pvalue(pooled, n, n_resamples=n_resamples, seed=seed)
