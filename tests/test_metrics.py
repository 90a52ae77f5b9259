"""Metrics come from the maintained libraries and behave as published."""

from __future__ import annotations

import pytest

from peftlab.evaluate.health import generation_health, repeat_rate
from peftlab.evaluate.metrics import classification_metrics, generation_metrics, sentence_scores


def test_identical_outputs_score_100() -> None:
    refs = [["the cat sat on the mat"], ["a dog barked loudly at night"]]
    m = generation_metrics(["the cat sat on the mat", "a dog barked loudly at night"], refs)
    for k in ("rouge1", "rouge2", "rougeL", "rougeL_precision", "rougeL_recall", "bleu"):
        assert m[k] == pytest.approx(100.0), k


def test_rouge_matches_rouge_score_directly() -> None:
    from rouge_score import rouge_scorer

    out, ref = "Revenue of Apple 2010 to 2020", "Apple revenue from 2010 to 2020"
    m = generation_metrics([out], [[ref]])
    s = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, out)["rougeL"]
    assert m["rougeL"] == pytest.approx(100 * s.fmeasure)
    assert m["rougeL_precision"] == pytest.approx(100 * s.precision)


def test_multi_reference_takes_the_best() -> None:
    single = generation_metrics(["blue spice is a coffee shop"], [["a pub in town"]])
    multi = generation_metrics(["blue spice is a coffee shop"], [["a pub in town", "blue spice is a coffee shop"]])
    assert multi["rougeL"] == pytest.approx(100.0) and single["rougeL"] < 50
    assert multi["bleu"] > single["bleu"]


def test_corpus_rouge_is_the_mean_of_the_per_row_scores() -> None:
    """One definition of ROUGE: the corpus numbers are the mean of `sentence_scores`' rows."""
    from rouge_score import rouge_scorer

    outs = ["the cat sat on the mat", "Revenue of Apple 2010 to 2020", "blue spice is a coffee shop", ""]
    refs = [["a cat sat on a mat"], ["Apple revenue from 2010 to 2020"],
            ["a pub in town", "blue spice is a coffee shop"], ["something"]]
    rows = sentence_scores(outs, refs)
    corpus = generation_metrics(outs, refs)
    assert len(rows) == len(outs)
    assert set(rows[0]) == {k for k in corpus if k != "bleu"}
    for k in rows[0]:
        assert sum(r[k] for r in rows) / len(rows) == pytest.approx(corpus[k]), k
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(refs[1][0], outs[1])["rougeL"]
    assert rows[1]["rougeL"] == pytest.approx(100 * direct.fmeasure)
    assert rows[2]["rougeL"] == pytest.approx(100.0) and rows[3]["rougeL"] == 0.0  # best reference; empty output
    with pytest.raises(ValueError):
        sentence_scores(outs, refs[:2])


def test_classification_metrics() -> None:
    m = classification_metrics([0, 1, 1, 2], [0, 1, 2, 2], ["neg", "neu", "pos"])
    assert m["accuracy"] == pytest.approx(75.0)
    # per-class F1: neg 1.0, neu 2/3, pos 2/3 -> macro 7/9
    assert m["macro_f1"] == pytest.approx(100 * 7 / 9)
    assert m["_per_class"]["pos"]["support"] == 2


def test_health_flags_repetition_and_no_stop() -> None:
    outs = ["Ghana Ghana Ghana Ghana Ghana Ghana", "Ghana Ghana Ghana Ghana"]
    h = generation_health(outs, [False, False], ["Ghana population 2020", "Exports of Ghana"])
    assert not h["healthy"]
    assert h["hit_max_pct"] == 100.0
    assert h["repeat_3gram_pct"] > 50
    ok = generation_health(["Ghana population 2020"], [True], ["Ghana population 2020"])
    assert ok["healthy"] and ok["hit_max_pct"] == 0
    assert repeat_rate(["a b c a b c"]) == pytest.approx(100 * 1 / 4)
