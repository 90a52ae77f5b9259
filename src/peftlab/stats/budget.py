"""Expected best validation score as a function of the tuning budget (Dodge et al., 2019).

"Show Your Work: Improved Reporting of Experimental Results" (EMNLP 2019) reports, for a method
tuned with N trials, the expected maximum score of n trials drawn from those N, n = 1..N. No
maintained library ships the estimator, and it is a closed form, so it is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def expected_max_curve(scores: Sequence[float], higher_is_better: bool = True) -> list[float]:
    r"""Expected best of n trials, n = 1..N, sampling with replacement from the N trial scores.

    With the scores sorted, :math:`v_{(1)} \le \dots \le v_{(N)}`, and the empirical CDF
    :math:`\hat F(v_{(i)}) = i/N`, the maximum of n i.i.d. draws has CDF :math:`\hat F^n`, so

    .. math::  E[\max_n] = \sum_{i=1}^{N} v_{(i)} \left[(i/N)^n - ((i-1)/N)^n\right]
                         = v_{(N)} - \sum_{i=1}^{N-1} (v_{(i+1)} - v_{(i)})\,(i/N)^n .

    The second (summation-by-parts) form is the one evaluated: every term is non-negative and
    shrinks with n, so the curve is non-decreasing and at most the max even in floating point.
    n = 1 gives the mean; for ``higher_is_better=False`` the curve is the expected minimum.
    """
    x = np.asarray(scores, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("expected_max_curve: no scores")
    if not np.all(np.isfinite(x)):
        raise ValueError("expected_max_curve: scores contain NaN or infinite values")
    v = np.sort(x if higher_is_better else -x)
    n = v.size
    gaps = np.diff(v)  # v_(i+1) - v_(i), i = 1..N-1
    cdf = np.arange(1, n) / n  # i/N, i = 1..N-1
    # powers[k] = cdf ** (k + 1), built by repeated multiplication (monotone in floating point).
    powers = np.cumprod(np.broadcast_to(cdf, (n, n - 1)), axis=0)
    curve = v[-1] - (powers * gaps).sum(axis=1)  # same summation order on every row
    return [float(c) for c in (curve if higher_is_better else -curve)]
