"""Metrics, each from the library people publish with, with its settings stated.

- ROUGE: Google's `rouge-score` (the reference re-implementation), ROUGE-1/2/L with the
  Porter stemmer on (use_stemmer=True), default tokenizer (lowercase, alphanumeric tokens).
  Precision, recall and F1 are all reported; multi-reference rows take the best reference.
  `sentence_scores` is the one definition (per example); the corpus numbers of
  `generation_metrics` are the mean of its rows.
- BLEU: `sacrebleu` corpus BLEU, default 13a tokenizer, exp smoothing (sacrebleu defaults),
  multi-reference when a row has several references. Reported on the 0-100 scale.
- Accuracy and macro-F1: scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def sentence_scores(outputs: Sequence[str], references: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    """ROUGE of each output against its references, one dict per row, 0-100.

    Keys: the F1 under the type's name (`rouge1`, `rouge2`, `rougeL`) and `<type>_precision`,
    `<type>_recall`. A row with several references takes, per ROUGE type, the reference with
    the best F1 (rouge-score's `score_multi`). The report's per-row scores, the corpus means of
    `generation_metrics` and per-example intervals all come from here.
    """
    from rouge_score import rouge_scorer

    if len(outputs) != len(references):
        raise ValueError(f"sentence_scores: {len(outputs)} outputs but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    rows = []
    for out, refs in zip(outputs, references, strict=True):
        scores = scorer.score_multi(list(refs), out) if len(refs) > 1 else scorer.score(refs[0], out)
        row: dict[str, float] = {}
        for name in ROUGE_TYPES:
            s = scores[name]
            row[f"{name}_precision"] = 100.0 * s.precision
            row[f"{name}_recall"] = 100.0 * s.recall
            row[name] = 100.0 * s.fmeasure
        rows.append(row)
    return rows


def generation_metrics(outputs: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus ROUGE (the mean of `sentence_scores` over the rows) and corpus BLEU, 0-100."""
    import sacrebleu

    rows = sentence_scores(outputs, references)
    metrics = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}
    width = max((len(r) for r in references), default=1)
    ref_streams = [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(width)]
    metrics["bleu"] = float(sacrebleu.corpus_bleu(list(outputs), ref_streams).score) if outputs else 0.0
    return metrics


def example_scores(preds: Sequence[Any]) -> list[dict[str, float]]:
    """One row of scores per prediction, stored beside the predictions (`scores.jsonl`) so that
    any two runs on the same test rows can be compared pair by pair: ROUGE-1/2/L F1 and sentence
    BLEU (sacrebleu `sentence_bleu`, its default smoothing) for generation, 0/1 correctness for
    classification. Corpus BLEU and macro-F1 are recomputed from the outputs per resample."""
    if all("pred_id" in p.extra and "gold_id" in p.extra for p in preds):
        return [{"correct": float(p.extra["pred_id"] == p.extra["gold_id"])} for p in preds]
    import sacrebleu

    refs = [p.reference if isinstance(p.reference, list) else [p.reference] for p in preds]
    rows = sentence_scores([p.output for p in preds], refs)
    out = []
    for p, r, rs in zip(preds, rows, refs, strict=True):
        out.append({"rouge1": r["rouge1"], "rouge2": r["rouge2"], "rougeL": r["rougeL"],
                    "bleu": float(sacrebleu.sentence_bleu(p.output, [str(x) for x in rs]).score)})
    return out


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
