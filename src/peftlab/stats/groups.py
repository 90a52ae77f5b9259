"""Holm correction and leaderboard rank groups.

Rank groups ("which rows are statistically tied with which"), with ``alpha`` (default 0.05):

1. Order rows best first by value (ties by input order, so the result is deterministic).
2. The best row leads group 1. Every other row is tested against it (``pvalue(best, i)``),
   the p-values are Holm-adjusted over that family, and rows with adjusted p >= alpha join
   group 1. These adjusted p-values are each row's ``p_vs_best``; the best row's is None
   (it is not compared with itself).
3. Among the rows not yet grouped, the best one leads group k + 1; it is tested against each
   other ungrouped row, Holm over that family, and the not-significant ones join it.
   Repeat until every row has a group.

So group 1 is exactly "not significantly different from the best", and each later group is led
by the best-valued row that differed significantly from every earlier leader. A row's group
can be lower than that of a better-valued row (a noisy row can be tied with the best while a
steadier, better one is not); the groups follow the tests, not the values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels' multipletests), same order as given."""
    p = np.asarray(pvalues, dtype=float).ravel()
    if p.size == 0:
        return []
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("holm: p-values must be in [0, 1]")
    from statsmodels.stats.multitest import multipletests

    return [float(v) for v in multipletests(p, method="holm")[1]]


@dataclass(frozen=True)
class RankGroup:
    """A row's rank group (1 = tied with the best) and its Holm-adjusted p against the best."""

    rank_group: int
    p_vs_best: float | None
    # the raw p-value was at the resolution floor of its resampling test: p_vs_best is an upper
    # bound, shown as "≤ p" (or "< 0.001"), not as a measured number
    p_at_floor: bool = False


def rank_groups(
    values: Sequence[float],
    pvalue: Callable[[int, int], float | tuple[float, float | None]],
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> list[RankGroup]:
    """Rank groups of rows (indices into ``values``), by the procedure in the module docstring.

    ``pvalue(i, j)`` is the raw two-sided paired p-value that rows i and j differ, e.g.
    ``lambda i, j: paired_pvalue(scores[i], scores[j])``, or a pair (p, floor) where the test
    has a resolution floor (a resampling test cannot give less than its floor). It is called only
    for a group leader against the rows still ungrouped.
    """
    v = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError("rank_groups: values must be finite (drop failed rows first)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    order = [int(i) for i in np.argsort(-v if higher_is_better else v, kind="stable")]
    group: dict[int, int] = {}
    p_best: dict[int, float] = {}
    at_floor: dict[int, bool] = {}
    remaining = order
    k = 0
    while remaining:
        k += 1
        leader, rest = remaining[0], remaining[1:]
        raw = [pvalue(leader, j) for j in rest]
        ps = [r[0] if isinstance(r, tuple) else r for r in raw]
        floors = [r[1] if isinstance(r, tuple) else None for r in raw]
        adjusted = holm(ps)
        if k == 1:
            p_best = dict(zip(rest, adjusted, strict=True))
            at_floor = {j: f is not None and p <= f + 1e-15 for j, p, f in zip(rest, ps, floors, strict=True)}
        group[leader] = k
        for j, p in zip(rest, adjusted, strict=True):
            if p >= alpha:
                group[j] = k
        remaining = [j for j in rest if j not in group]
    return [RankGroup(group[i], p_best.get(i), at_floor.get(i, False)) for i in range(v.size)]
