"""Which tasks a base model can do, from its config alone (no weights loaded).

    kind(config)              "decoder", "encoder", "encoder-decoder", "vision" (or "unknown")
    fit(config, task, name)   (True, "") or (False, why): "all-minilm-l6-v2 is an encoder
                              (BertModel); causal-lm needs a decoder model (...ForCausalLM)"
    tasks(config)             the tasks it fits

causal-lm needs a decoder (a `*ForCausalLM` checkpoint, or a model type transformers builds
one for that is not an encoder), seq2seq an encoder-decoder, classification an encoder or a
decoder that transformers gives a sequence-classification head, image-classification an image
model. The model-type tables are transformers' own Auto-class mappings.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from peftlab.tasks.spec import CAUSAL_LM, CLASSIFICATION, IMAGE_CLASSIFICATION, SEQ2SEQ, TASK_NAMES

NEEDS = {CAUSAL_LM: "a decoder model (a ...ForCausalLM checkpoint such as a Llama, SmolLM or GPT-2)",
         SEQ2SEQ: "an encoder-decoder model (T5, BART, ...)",
         CLASSIFICATION: "an encoder (BERT, RoBERTa, MiniLM, ...) or a decoder with a classification head",
         IMAGE_CLASSIFICATION: "an image model (ViT, ConvNeXt, ...)"}


@lru_cache(maxsize=1)
def _tables() -> dict[str, frozenset[str]]:
    from transformers.models.auto import modeling_auto as m

    return {"causal": frozenset(m.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
            "masked": frozenset(m.MODEL_FOR_MASKED_LM_MAPPING_NAMES),
            "seq2seq": frozenset(m.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES),
            "seqcls": frozenset(m.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES),
            "image": frozenset(m.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)}


def architecture(config: dict[str, Any]) -> str:
    archs = config.get("architectures") or []
    return str(archs[0]) if archs else str(config.get("model_type") or "unknown")


def known(config: dict[str, Any]) -> bool:
    """A model type transformers itself builds (a custom one, with its own code, is not judged here)."""
    mt = str(config.get("model_type") or "")
    return bool(mt) and not config.get("auto_map") and any(mt in names for names in _tables().values())


def kind(config: dict[str, Any]) -> str:
    t = _tables()
    mt = str(config.get("model_type") or "")
    archs = [str(a) for a in config.get("architectures") or []]
    if not known(config):  # judged by its architecture's name alone
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
            return "decoder"
        if any(a.endswith("ForConditionalGeneration") for a in archs) or config.get("is_encoder_decoder"):
            return "encoder-decoder"
        return "unknown"
    if config.get("is_encoder_decoder") or mt in t["seq2seq"] and mt not in t["causal"]:
        return "encoder-decoder"
    if any(a.endswith("ForConditionalGeneration") for a in archs) and mt in t["seq2seq"]:
        return "encoder-decoder"
    if mt in t["image"] and mt not in t["seqcls"]:
        return "vision"
    encoder_type = mt in t["masked"] or mt not in t["causal"]
    if any(a.endswith("ForCausalLM") for a in archs) and not encoder_type:
        return "decoder"
    if any(a.endswith("LMHeadModel") for a in archs) and not encoder_type:
        return "decoder"
    if not encoder_type:  # e.g. LlamaForSequenceClassification, or no architectures recorded
        return "decoder"
    return "encoder"


def fit(config: dict[str, Any], task: str, name: str = "the model") -> tuple[bool, str]:
    """Whether the model fits the task, and why not. A model type transformers does not know (its
    own code) is not refused here: loading it says what it needs."""
    if not known(config):
        return True, ""
    t = _tables()
    mt = str(config.get("model_type") or "")
    k = kind(config)
    ok = {CAUSAL_LM: k == "decoder" and mt in t["causal"],
          SEQ2SEQ: k == "encoder-decoder" and mt in t["seq2seq"],
          CLASSIFICATION: k in ("encoder", "decoder", "encoder-decoder") and mt in t["seqcls"],
          IMAGE_CLASSIFICATION: mt in t["image"]}.get(task, True)
    if ok:
        return True, ""
    article = "an" if k[0] in "aeiou" else "a"
    return False, f"{name} is {article} {k} ({architecture(config)}); {task} needs {NEEDS.get(task, 'another model')}"


def tasks(config: dict[str, Any]) -> list[str]:
    return [task for task in TASK_NAMES if fit(config, task)[0]]
