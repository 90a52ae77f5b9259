"""Corpus-level statistics as functions of example indices, for resampling.

A corpus metric (BLEU, macro-F1) is not the mean of sentence scores, so resampling must
recompute it on the resampled examples. Each builder here returns ``fn(idx) -> float`` that
scores the examples ``idx`` (an int array, repeats allowed) with the same settings as
`peftlab.evaluate.metrics`: sacrebleu's default BLEU (13a tokenizer, exp smoothing, 0-100)
and scikit-learn's macro-F1 (zero_division=0, 0-100).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Statistic = Callable[[np.ndarray], float]


def bleu_statistic(outputs: Sequence[str], references: Sequence[Sequence[str]]) -> Statistic:
    """Corpus BLEU of the outputs ``idx`` against their references (each row: one or more).

    Each sentence's n-gram statistics are extracted once by sacrebleu; a resample sums the
    chosen rows and lets sacrebleu score the sums, which equals `sacrebleu.corpus_bleu` on
    those sentences and costs microseconds instead of re-tokenising.
    """
    from sacrebleu.metrics import BLEU

    if len(outputs) != len(references):
        raise ValueError(f"bleu_statistic: {len(outputs)} outputs but {len(references)} references")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("bleu_statistic: a row has no reference")
    metric = BLEU()
    rows = []
    for out, refs in zip(outputs, references, strict=True):
        s = metric.corpus_score([out], [[r] for r in refs])
        rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
    stats = np.array(rows, dtype=np.int64).reshape(len(rows), 2 + 2 * metric.max_ngram_order)
    order = metric.max_ngram_order

    def statistic(idx: np.ndarray) -> float:
        tot = stats[np.asarray(idx, dtype=np.intp)].sum(axis=0)
        return float(
            metric.compute_bleu(
                correct=tot[2 : 2 + order].tolist(),
                total=tot[2 + order :].tolist(),
                sys_len=int(tot[0]),
                ref_len=int(tot[1]),
                smooth_method=metric.smooth_method,
                smooth_value=metric.smooth_value,
                effective_order=metric.effective_order,
                max_ngram_order=order,
            ).score
        )

    return statistic


def macro_f1_statistic(pred: Sequence[int], gold: Sequence[int], labels: Sequence[int]) -> Statistic:
    """Macro-F1 (0-100) of the predictions ``idx`` over the given labels (absent ones count 0).

    Computed from one confusion count per call (numpy), which equals scikit-learn's
    ``f1_score(average="macro", zero_division=0)`` (tests check it) and costs microseconds
    instead of milliseconds: a paired test calls it thousands of times."""
    p, g = np.asarray(pred), np.asarray(gold)
    if p.shape != g.shape:
        raise ValueError(f"macro_f1_statistic: {p.size} predictions but {g.size} gold labels")
    names = list(labels)
    k = len(names)
    code = {name: i for i, name in enumerate(names)}
    pi = np.array([code.get(x, -1) for x in p.tolist()], dtype=np.intp)
    gi = np.array([code.get(x, -1) for x in g.tolist()], dtype=np.intp)

    def statistic(idx: np.ndarray) -> float:
        i = np.asarray(idx, dtype=np.intp)
        pp, gg = pi[i], gi[i]
        tp = np.bincount(gg[(pp == gg) & (gg >= 0)], minlength=k)[:k]
        n_pred = np.bincount(pp[pp >= 0], minlength=k)[:k]
        n_gold = np.bincount(gg[gg >= 0], minlength=k)[:k]
        denom = n_pred + n_gold  # F1 = 2 tp / (predicted + actual); 0 where both are 0
        f1 = np.divide(2.0 * tp, denom, out=np.zeros(k), where=denom > 0)
        return 100.0 * float(f1.mean()) if k else 0.0

    return statistic
