"""BERTScore from the bert-score package with a local encoder folder (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINILM

from peftlab.errors import PeftlabError
from peftlab.evaluate.bertscore import METRIC_KEYS, bertscore, default_layers, resolve_encoder, settings

pytestmark = pytest.mark.skipif(not MINILM.is_dir(), reason="../shared/models not present")

CANDS = ["Number of pet birds in the US from 2000 to 2017", "Revenue of Apple 2019", "The cat sat on the mat"]
REFS = ["Number of pet birds in the U.S. 2000 to 2017", "Apple revenue worldwide from 2010 to 2019",
        "Franchise value of the New York Knicks 2003 to 2020"]


def test_default_encoder_is_the_local_minilm_folder() -> None:
    path = resolve_encoder()
    assert path == MINILM.resolve()
    assert default_layers(path) == 6  # not in bert-score's table: the encoder's last layer
    how = settings(path)
    assert how["library"].startswith("bert-score ") and how["num_layers"] == 6
    assert how["idf"] is False and how["rescale_with_baseline"] is False


def test_the_encoder_is_recorded_by_a_portable_name(tmp_path: Path) -> None:
    """Reports show `model` and are mailed: never this machine's absolute path (issue 34)."""
    path = resolve_encoder()
    assert settings(path)["model"] == "all-minilm-l6-v2" and settings(path)["model_path"] == str(path)
    assert settings(path, name="all-minilm-l6-v2")["model"] == "all-minilm-l6-v2"
    assert settings(path, name="sentence-transformers/all-MiniLM-L6-v2")["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert settings(path, name=str(path))["model"] == path.name  # an absolute path as given: its folder's name
    assert not Path(settings(path, name=str(path))["model"]).is_absolute()


def test_an_older_record_is_renamed_portably_without_scoring_again(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    import importlib.metadata as md
    from types import SimpleNamespace

    import peftlab.evaluate.bertscore as bs

    path = resolve_encoder()
    preds = tmp_path / "predictions.jsonl"
    preds.write_text('{"output": "a", "reference": "b"}\n')
    old = {"library": f"bert-score {md.version('bert-score')}", "model": str(path), "num_layers": 6}
    metrics = dict.fromkeys(METRIC_KEYS, 50.0)
    run = SimpleNamespace(id=1, status="done", metrics=metrics, info={"bertscore": old}, file=lambda _: preds,
                          config={"experiment": {"task": "causal-lm", "evaluation": {}}})
    updates = []
    store = SimpleNamespace(update=lambda run_id, **kw: updates.append(kw))
    monkeypatch.setattr(bs, "bertscore", lambda *a, **k: pytest.fail("scored again despite the cache"))
    assert bs.bertscore_run(store, run) == metrics
    assert run.info["bertscore"]["model"] == "all-minilm-l6-v2" and run.info["bertscore"]["model_path"] == str(path)
    assert updates == [{"info": run.info}]


def test_matches_bert_score_itself() -> None:
    """Our wrapper passes the settings it claims: same numbers as calling bert-score directly."""
    from bert_score import BERTScorer

    ours = bertscore(CANDS, REFS, MINILM)
    p, r, f = BERTScorer(model_type=str(MINILM), num_layers=6, idf=False, rescale_with_baseline=False).score(CANDS, REFS)
    assert ours["bertscore_precision"] == pytest.approx(100 * float(p.mean()), abs=1e-3)
    assert ours["bertscore_recall"] == pytest.approx(100 * float(r.mean()), abs=1e-3)
    assert ours["bertscore_f1"] == pytest.approx(100 * float(f.mean()), abs=1e-3)


def test_scores_order_identical_related_unrelated() -> None:
    same = bertscore(["Number of pet birds in the U.S. 2000 to 2017"], [REFS[0]], MINILM)
    assert all(same[k] == pytest.approx(100.0, abs=1e-3) for k in METRIC_KEYS)
    related = bertscore(CANDS[:1], REFS[:1], MINILM)["bertscore_f1"]
    unrelated = bertscore(CANDS[2:], REFS[2:], MINILM)["bertscore_f1"]
    assert 100.0 > related > unrelated > 0.0


def test_empty_outputs_score_zero_and_multi_reference_takes_the_best() -> None:
    # bert-score crashes on empty strings under transformers 5; we score them 0 as it documents.
    both = bertscore([CANDS[0], ""], [REFS[0], REFS[1]], MINILM)
    alone = bertscore([CANDS[0]], [REFS[0]], MINILM)
    assert both["bertscore_f1"] == pytest.approx(alone["bertscore_f1"] / 2, abs=1e-3)
    assert bertscore([""], ["anything"], MINILM)["bertscore_f1"] == 0.0
    multi = bertscore([CANDS[0]], [[REFS[2], REFS[0]]], MINILM)
    assert multi["bertscore_f1"] == pytest.approx(alone["bertscore_f1"], abs=1e-3)
    assert bertscore([], [], MINILM) == dict.fromkeys(METRIC_KEYS, 0.0)
    with pytest.raises(ValueError):
        bertscore(["a"], [], MINILM)


def test_another_layer_is_another_score() -> None:
    last = bertscore(CANDS, REFS, MINILM)["bertscore_f1"]
    mid = bertscore(CANDS, REFS, MINILM, num_layers=3)["bertscore_f1"]
    assert mid != pytest.approx(last, abs=0.1)
    assert settings(MINILM, 3)["key"] != settings(MINILM)["key"]


def test_missing_encoder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PeftlabError, match="BERTScore encoder 'no-such-encoder' not found"):
        bertscore(["a"], ["b"], "no-such-encoder")
    with pytest.raises(PeftlabError, match="evaluation.bertscore_model"):
        resolve_encoder(str(tmp_path / "nothing-here"))
