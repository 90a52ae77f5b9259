"""peftlab.stats: interval coverage, paired tests, Holm and rank groups, expected-max curve."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from peftlab.stats import (
    bleu_statistic,
    corpus_ci,
    expected_max_curve,
    holm,
    macro_f1_statistic,
    mean_ci,
    paired_bleu_pvalue,
    paired_corpus_pvalue,
    paired_pvalue,
    rank_groups,
    seeds_ci,
)

REPS = 200
small = settings(max_examples=25, deadline=None)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------- intervals: coverage


@pytest.mark.parametrize(
    ("draw", "true_mean"),
    [
        (lambda rng: rng.binomial(1, 0.7, 200).astype(float), 0.7),
        (lambda rng: rng.normal(50.0, 10.0, 200), 50.0),
    ],
    ids=["bernoulli", "normal"],
)
def test_mean_ci_covers_true_mean_about_95_percent(draw, true_mean) -> None:
    rng = np.random.default_rng(123)
    hits = 0
    for rep in range(REPS):
        iv = mean_ci(draw(rng), n_resamples=300, seed=rep)
        hits += iv.low <= true_mean <= iv.high
    assert 0.90 <= hits / REPS <= 0.99


def test_seeds_ci_covers_true_mean_with_seed_variance() -> None:
    # Each seed's true mean is 50 + N(0, 1); examples are N(seed mean, 10), 100 per seed, so the
    # seed-to-seed spread is as large as the test-set standard error.
    rng = np.random.default_rng(7)
    hits = 0
    for rep in range(REPS):
        runs = [rng.normal(m, 10.0, 100) for m in 50.0 + rng.normal(0.0, 1.0, 8)]
        iv = seeds_ci(runs, n_resamples=300, seed=rep)
        hits += iv.low <= 50.0 <= iv.high
    assert 0.85 <= hits / REPS <= 0.99


# ---------------------------------------------------------------- intervals: edge cases


def test_mean_ci_degenerate_inputs_give_zero_width() -> None:
    iv = mean_ci([4.0])
    assert (iv.value, iv.low, iv.high) == (4.0, 4.0, 4.0)
    iv = mean_ci([0.3] * 50)
    assert iv.low == iv.high == iv.value == pytest.approx(0.3)
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([1.0, float("nan")])


@small
@given(st.lists(finite, min_size=2, max_size=40))
def test_mean_ci_is_finite_and_inside_the_data_range(xs: list[float]) -> None:
    iv = mean_ci(xs, n_resamples=99)
    assert np.isfinite([iv.value, iv.low, iv.high]).all()
    lo, hi = min(xs), max(xs)
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    assert lo - tol <= iv.low <= iv.high <= hi + tol


def test_corpus_ci_falls_back_to_percentile_when_bca_cannot_be_formed() -> None:
    # Distinct examples in a resample: the full sample is the maximum, so BCa's bias term is infinite.
    iv = corpus_ci(lambda idx: float(np.unique(idx).size), 40, n_resamples=200)
    assert iv.value == 40.0
    assert np.isfinite([iv.low, iv.high]).all() and iv.low <= iv.high < 40.0


def test_seeds_ci_reports_seed_spread_and_handles_degenerate_runs() -> None:
    runs = [np.full(30, 1.0), np.full(30, 2.0), np.full(30, 3.0)]
    iv = seeds_ci(runs, n_resamples=200)
    assert iv.value == pytest.approx(2.0) and iv.seed_std == pytest.approx(1.0) and iv.n_seeds == 3
    assert 1.0 <= iv.low < iv.value < iv.high <= 3.0
    same = seeds_ci([np.full(10, 5.0)] * 3)
    assert (same.low, same.high, same.seed_std) == (5.0, 5.0, 0.0)
    one = seeds_ci([np.arange(20.0)], n_resamples=200)
    assert one.seed_std == 0.0 and one.low < one.value < one.high
    with pytest.raises(ValueError):
        seeds_ci([])


# ---------------------------------------------------------------- corpus statistics

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "rug", "today", "now", "big", "small", "red", "blue"]


def _corpus(n: int = 60, seed: int = 0) -> tuple[list[str], list[list[str]], list[str]]:
    """References (one or two per row), a good system (mostly right) and a poor one (random)."""
    rng = np.random.default_rng(seed)
    refs = [
        [" ".join(rng.choice(WORDS, 9))] + ([" ".join(rng.choice(WORDS, 7))] if i % 3 == 0 else [])
        for i in range(n)
    ]
    good = [r[0] if i % 5 else " ".join(rng.choice(WORDS, 9)) for i, r in enumerate(refs)]
    poor = [" ".join(rng.choice(WORDS, 9)) for _ in range(n)]
    return good, refs, poor


def test_bleu_statistic_matches_sacrebleu_corpus_bleu() -> None:
    good, refs, poor = _corpus()
    streams = [[r[i] if i < len(r) else r[0] for r in refs] for i in range(2)]
    for system in (good, poor):
        fn = bleu_statistic(system, refs)
        assert fn(np.arange(len(system))) == pytest.approx(
            sacrebleu.corpus_bleu(system, streams).score, abs=1e-9
        )
    idx = np.array([3, 3, 7, 10])
    picked = [good[i] for i in idx]
    want = sacrebleu.corpus_bleu(picked, [[streams[k][i] for i in idx] for k in range(2)]).score
    assert bleu_statistic(good, refs)(idx) == pytest.approx(want, abs=1e-9)


def test_corpus_ci_recomputes_bleu_and_macro_f1() -> None:
    good, refs, _ = _corpus()
    iv = corpus_ci(bleu_statistic(good, refs), len(good), n_resamples=300)
    assert iv.low < iv.value < iv.high and iv.low >= 0.0 and iv.high <= 100.0

    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, 60)
    pred = np.where(rng.random(60) < 0.7, gold, rng.integers(0, 3, 60))
    fn = macro_f1_statistic(pred, gold, [0, 1, 2])
    assert fn(np.arange(60)) == pytest.approx(100 * f1_score(gold, pred, labels=[0, 1, 2], average="macro"))
    iv = corpus_ci(fn, 60, n_resamples=150)
    assert iv.low < iv.value < iv.high


# ---------------------------------------------------------------- paired tests


def test_paired_permutation_flags_planted_difference_not_identical_runs() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(50.0, 10.0, 200)
    b = a + rng.normal(3.0, 5.0, 200)
    assert paired_pvalue(a, b, n_resamples=1999) < 0.01
    assert paired_pvalue(a, a.copy(), n_resamples=1999) > 0.5
    nudged = a.copy()
    nudged[0] += 1e-9
    assert paired_pvalue(a, nudged, n_resamples=1999) > 0.5
    assert paired_pvalue(a, a + rng.normal(0.0, 5.0, 200), n_resamples=1999) > 0.01


def test_mcnemar_flags_planted_difference_not_identical_runs() -> None:
    rng = np.random.default_rng(3)
    a = rng.binomial(1, 0.7, 200)
    b = a.copy()
    wrong = np.flatnonzero(a == 1)[:30]
    b[wrong] = 0
    b[np.flatnonzero(a == 0)[:3]] = 1  # 30 vs 3 discordant pairs
    p = paired_pvalue(a, b)  # auto: 0/1 scores -> McNemar
    assert p < 0.01
    assert p == pytest.approx(binomtest(30, 33, 0.5).pvalue)
    assert paired_pvalue(a, a.copy()) == 1.0
    with pytest.raises(ValueError):
        paired_pvalue([0.5, 1.0], [1.0, 0.0], kind="mcnemar")


def test_paired_bleu_flags_planted_difference_not_identical_systems() -> None:
    good, refs, poor = _corpus()
    assert paired_bleu_pvalue(good, poor, refs, n_resamples=500) < 0.01
    assert paired_bleu_pvalue(good, list(good), refs, n_resamples=500) > 0.5
    # One sentence differs: every swap gives +-d, so p = 1 (sacrebleu's PairedTest says ~0.001 here).
    near = list(good)
    near[4] = "something else entirely"
    assert paired_bleu_pvalue(good, near, refs, n_resamples=500) > 0.5


def test_paired_corpus_pvalue_for_macro_f1() -> None:
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 3, 80)
    pa = np.where(rng.random(80) < 0.9, gold, (gold + 1) % 3)
    pb = np.where(rng.random(80) < 0.4, gold, (gold + 1) % 3)
    pooled = macro_f1_statistic(np.r_[pa, pb], np.r_[gold, gold], [0, 1, 2])
    assert paired_corpus_pvalue(pooled, 80, n_resamples=200) < 0.01
    same = macro_f1_statistic(np.r_[pa, pa], np.r_[gold, gold], [0, 1, 2])
    assert paired_corpus_pvalue(same, 80, n_resamples=200) == 1.0


@small
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=1, max_size=30))
def test_paired_pvalue_is_a_symmetric_probability(pairs: list[tuple[float, float]]) -> None:
    a, b = (np.array(c) for c in zip(*pairs, strict=True))
    p = paired_pvalue(a, b, n_resamples=199)
    assert 0.0 < p <= 1.0
    assert p == pytest.approx(paired_pvalue(b, a, n_resamples=199))


# ---------------------------------------------------------------- Holm and rank groups


def test_holm_matches_hand_computed_values() -> None:
    # sorted 0.01, 0.03, 0.04, 0.2 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08 (raised to 0.09), 0.2
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])


def test_rank_groups_ties_in_group_1_clearly_worse_in_group_2() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(60.0, 15.0, 300)
    scores = [
        base + rng.normal(0.0, 1.0, 300),
        base + 5.0 + rng.normal(0.0, 1.0, 300),
        base + 4.95 + rng.normal(0.0, 1.0, 300),
    ]
    values = [float(s.mean()) for s in scores]

    def pvalue(i: int, j: int) -> float:
        return paired_pvalue(scores[i], scores[j], n_resamples=999)

    best = int(np.argmax(values))
    out = rank_groups(values, pvalue)
    assert out[best].p_vs_best is None
    assert [r.rank_group for r in out] == [2, 1, 1]
    assert out[0].p_vs_best < 0.05 < next(r.p_vs_best for i, r in enumerate(out) if i not in (0, best))

    # The same rows as losses: lower is better, so the ordering of groups flips.
    losses = rank_groups([-v for v in values], pvalue, higher_is_better=False)
    assert [r.rank_group for r in losses] == [2, 1, 1]
    flipped = rank_groups(values, pvalue, higher_is_better=False)
    assert flipped[0].rank_group == 1 and flipped[0].p_vs_best is None
    assert [r.rank_group for r in flipped][1:] == [2, 2]


def test_rank_groups_walks_leaders_with_holm_per_family() -> None:
    # Rows are already in value order; raw pairwise p-values chosen by hand.
    raw = {(0, 1): 0.03, (0, 2): 0.03, (0, 3): 0.001, (0, 4): 0.001, (0, 5): 0.001, (3, 4): 0.3, (3, 5): 0.01}
    calls: list[tuple[int, int]] = []

    def pvalue(i: int, j: int) -> float:
        calls.append((i, j))
        return raw[(i, j)]

    out = rank_groups([90.0, 89.0, 88.0, 80.0, 79.0, 70.0], pvalue)
    # Best's family of 5 under Holm: 0.001 -> 0.005 and 0.03 -> 0.06, so rows 1 and 2 (raw 0.03)
    # are tied with the best. Row 3 leads group 2: Holm over {4, 5} gives 0.3 and 0.02.
    assert [r.rank_group for r in out] == [1, 1, 1, 2, 2, 3]
    assert out[0].p_vs_best is None
    assert [r.p_vs_best for r in out[1:]] == pytest.approx([0.06, 0.06, 0.005, 0.005, 0.005])
    assert calls == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (3, 4), (3, 5)]


def test_rank_groups_is_deterministic_on_tied_values_and_rejects_nan() -> None:
    out = rank_groups([5.0, 5.0, 5.0], lambda i, j: 1.0)
    assert [(r.rank_group, r.p_vs_best) for r in out] == [(1, None), (1, 1.0), (1, 1.0)]
    assert rank_groups([3.0], lambda i, j: 1.0)[0].rank_group == 1
    with pytest.raises(ValueError):
        rank_groups([1.0, float("nan")], lambda i, j: 1.0)


# ---------------------------------------------------------------- expected max curve


def test_expected_max_curve_hand_checked() -> None:
    # n=2: 1*(1/9) + 2*(4/9 - 1/9) + 3*(1 - 4/9) = 22/9; n=3: (1 + 2*7 + 3*19)/27 = 8/3.
    assert expected_max_curve([3.0, 1.0, 2.0]) == pytest.approx([2.0, 22 / 9, 8 / 3])
    assert expected_max_curve([3.0, 1.0, 2.0], higher_is_better=False) == pytest.approx([2.0, 14 / 9, 4 / 3])
    assert expected_max_curve([7.0]) == [7.0]
    assert expected_max_curve([2.0, 2.0, 2.0]) == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError):
        expected_max_curve([])


@settings(max_examples=50, deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), st.booleans())
def test_expected_max_curve_properties(xs: list[float], higher: bool) -> None:
    curve = expected_max_curve(xs, higher_is_better=higher)
    assert len(curve) == len(xs)
    assert curve[0] == pytest.approx(float(np.mean(xs)), rel=1e-9, abs=1e-6)
    steps = np.diff(curve) if higher else -np.diff(curve)
    assert np.all(steps >= 0)
    if higher:
        assert curve[-1] <= max(xs)
    else:
        assert curve[-1] >= min(xs)


def test_import_is_light() -> None:
    # The leaderboard imports this in processes that never train: no torch, heavy libraries lazily.
    code = "import sys, peftlab.stats; print(sorted(m for m in ('torch', 'scipy', 'statsmodels') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
