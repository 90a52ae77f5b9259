"""Shared fixtures: paths to ../shared, tiny experiment files, tiny random models."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests use tiny models: one thread is fastest, and avoids OpenMP spin-waits when the
# machine's two cores are shared.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEFTLAB_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"
STORIES = MODELS / "stories260k"
MINILM = MODELS / "all-minilm-l6-v2"
SMOLLM = MODELS / "smollm2-135m-instruct-gguf"

needs_shared = pytest.mark.skipif(not STORIES.is_dir(), reason="../shared/models not present")


@contextlib.contextmanager
def one_ray_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Held by every test (and module fixture) that starts Ray. README's command runs the suite on
    two pytest-xdist workers (`-n 2 --dist loadfile`: a test file stays on one worker, so its
    module fixtures are built once); this lock keeps two Ray instances from running at once on
    the two cores (a cluster test's health checks would then see a node as lost). The lock file is
    beside the workers' temporary folders, so every worker of the session sees the same one."""
    import fcntl

    path = tmp_path_factory.getbasetemp().parent / "peftlab-ray.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same cache for module fixtures, which are set up before `_isolated_cache` applies: the
    GGUF copies and the forgetting reference sets they make never go to the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PEFTLAB_CACHE_DIR", os.environ.get("PEFTLAB_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache"))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # One GGUF cache per test session, never the user's.
    cache = os.environ.get("PEFTLAB_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    monkeypatch.setenv("PEFTLAB_CACHE_DIR", cache)
    monkeypatch.setenv("PEFTLAB_MODEL_PATH", str(MODELS))
    monkeypatch.setenv("PEFTLAB_DATA_PATH", str(DATA))


def write_experiment(tmp_path: Path, body: dict, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return p


def tiny_causal(methods: list, **training: object) -> dict:
    """A seconds-long causal-lm experiment on stories260k and 32 statista rows."""
    return {
        "name": "tiny",
        "model": str(STORIES),
        "task": "causal-lm",
        "data": {
            "train": str(DATA / "statista" / "train.jsonl"),
            "validation": str(DATA / "statista" / "validation.jsonl"),
            "test": str(DATA / "statista" / "test.jsonl"),
            "prompt": "Table: {table}\nTitle:",
            "target": "title",
            "max_train_examples": 32,
            "max_validation_examples": 8,
            "max_test_examples": 8,
        },
        "methods": methods,
        # fp32: tests compare outputs exactly across runs and paths; `precision: auto` would pick bf16
        # autocast on a CPU with AMX, whose rounding flips greedy choices of these tiny models.
        "training": {"max_steps": 6, "batch_size": 8, "max_source_length": 48, "max_target_length": 16,
                     "logging_steps": 1, "precision": "fp32", **training},
        "evaluation": {"max_new_tokens": 8, "batch_size": 8},
    }


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer T5 with the stories260k tokenizer (vocab 512)."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    out = tmp_path_factory.mktemp("tiny-t5")
    tok = AutoTokenizer.from_pretrained(STORIES)
    tok.pad_token = tok.unk_token
    cfg = T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                   decoder_start_token_id=tok.pad_token_id, dropout_rate=0.0)
    import torch

    torch.manual_seed(0)
    T5ForConditionalGeneration(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    out = tmp_path_factory.mktemp("tiny-bart")
    tok = AutoTokenizer.from_pretrained(STORIES)
    tok.pad_token = tok.unk_token
    cfg = BartConfig(vocab_size=512, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None,
                     dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    import torch

    torch.manual_seed(0)
    BartForConditionalGeneration(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer ViT for 28x28 grayscale images (pneumoniamnist)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    out = tmp_path_factory.mktemp("tiny-vit")
    cfg = ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, num_labels=2,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    import torch

    torch.manual_seed(0)
    ViTForImageClassification(cfg).save_pretrained(out)
    ViTImageProcessor(size={"height": 28, "width": 28}, image_mean=[0.5], image_std=[0.5]).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the all-MiniLM-L6-v2 tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(MINILM)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def causal_task(path: Path, **training: object):  # noqa: ANN201 - a CausalLMTask
    """The causal-lm task on `path`'s tokenizer (pad = EOS where it has none)."""
    from transformers import AutoTokenizer

    from peftlab.config.schema import EvaluationConfig, TrainingConfig
    from peftlab.tasks.causal_lm import CausalLMTask

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return CausalLMTask(tok, None, TrainingConfig(**training), EvaluationConfig())


def stories_with_method(task, method: str):  # noqa: ANN001, ANN201 - a CausalLMTask; a (peft) model
    """stories260k, prepared by `task` and wrapped by `method` with its default options."""
    from transformers import AutoModelForCausalLM

    from peftlab.methods import MethodContext, get_method

    model = AutoModelForCausalLM.from_pretrained(STORIES)
    task.prepare_model(model)
    m = get_method(method)
    ctx = MethodContext(task="causal-lm", model_type=model.config.model_type, total_steps=1,
                        tokenizer_path=STORIES, prompt_text="Table:", precision="fp32", tokenizer=task.tok)
    return m.apply(model, m.parse_options({}), ctx)
