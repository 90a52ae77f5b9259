"""Metrics, each from the library people publish with, with its settings stated.

- ROUGE: Google's `rouge-score` (the reference re-implementation), ROUGE-1/2/L with the
  Porter stemmer on (use_stemmer=True), default tokenizer (lowercase, alphanumeric tokens).
  Precision, recall and F1 are all reported; multi-reference rows take the best reference.
- BLEU: `sacrebleu` corpus BLEU, default 13a tokenizer, exp smoothing (sacrebleu defaults),
  multi-reference when a row has several references. Reported on the 0-100 scale.
- Accuracy and macro-F1: scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def generation_metrics(outputs: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    sums: dict[str, float] = {}
    for out, refs in zip(outputs, references, strict=True):
        scores = scorer.score_multi(list(refs), out) if len(refs) > 1 else scorer.score(refs[0], out)
        for name, s in scores.items():
            for part, v in (("precision", s.precision), ("recall", s.recall), ("", s.fmeasure)):
                key = f"{name}_{part}" if part else name
                sums[key] = sums.get(key, 0.0) + v
    n = max(len(outputs), 1)
    metrics = {k: 100.0 * v / n for k, v in sums.items()}
    width = max((len(r) for r in references), default=1)
    ref_streams = [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(width)]
    metrics["bleu"] = float(sacrebleu.corpus_bleu(list(outputs), ref_streams).score) if outputs else 0.0
    return metrics


def classification_metrics(pred: Sequence[int], gold: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(range(len(names)))
    acc = accuracy_score(gold, pred)
    macro = f1_score(gold, pred, labels=labels, average="macro", zero_division=0)
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    out: dict[str, Any] = {"accuracy": 100.0 * acc, "macro_f1": 100.0 * macro}
    for i, name in enumerate(names):
        out[f"f1[{name}]"] = 100.0 * float(f[i])
    out["_per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(names)
    }
    return out
