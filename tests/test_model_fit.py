"""Which tasks a base model fits, from its config alone (`peftlab.models.fit`), and the preflight's
refusal of a model that does not fit, said by what it is."""

from __future__ import annotations

import json

import pytest
from conftest import MINILM, STORIES, needs_shared

from peftlab.models.fit import fit, kind, tasks


def _cfg(cls_name: str, **kw: object) -> dict:
    import transformers

    d = getattr(transformers, cls_name)().to_dict()
    d.update(kw)
    return d


@pytest.mark.parametrize(("config", "what", "fits"), [
    (("T5Config",), "encoder-decoder", {"seq2seq", "classification"}),
    (("BartConfig",), "encoder-decoder", {"seq2seq", "classification"}),
    (("GPT2Config", {"architectures": ["GPT2LMHeadModel"]}), "decoder", {"causal-lm", "classification"}),
    (("LlamaConfig", {"architectures": ["LlamaForSequenceClassification"]}), "decoder", {"causal-lm", "classification"}),
    (("RobertaConfig",), "encoder", {"classification"}),
    (("ViTConfig",), "vision", {"image-classification"}),
])
def test_kinds_and_tasks(config: tuple, what: str, fits: set[str]) -> None:
    c = _cfg(config[0], **(config[1] if len(config) > 1 else {}))
    assert kind(c) == what and set(tasks(c)) == fits


@needs_shared
def test_the_shared_models() -> None:
    enc = json.loads((MINILM / "config.json").read_text())
    assert kind(enc) == "encoder" and tasks(enc) == ["classification"]
    ok, why = fit(enc, "causal-lm", "all-minilm-l6-v2")
    assert not ok and why.startswith("all-minilm-l6-v2 is an encoder (BertModel); causal-lm needs a decoder model")
    dec = json.loads((STORIES / "config.json").read_text())
    assert kind(dec) == "decoder" and "causal-lm" in tasks(dec) and "seq2seq" not in tasks(dec)
    assert "seq2seq needs an encoder-decoder" in fit(dec, "seq2seq", "stories260k")[1]


def test_a_model_with_its_own_code_is_not_judged_here() -> None:
    c = {"model_type": "custom-llama", "architectures": ["LlamaForCausalLM"], "auto_map": {"AutoConfig": "x.C"}}
    assert kind(c) == "decoder" and fit(c, "seq2seq") == (True, "")
