"""The benchmark cases: one experiment each, run by both recipes on the same examples.

A case is a peftlab experiment (the dict a YAML file would hold, one `lora` method) plus
what the usual recipe pads to. Quick mode shrinks each case so the whole run stays under
three minutes; tiny mode swaps in a 260k-parameter model so the test suite can run the whole
benchmark in seconds; full mode is what `benchmarks/RESULTS.md` reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

USUAL_MAX_LENGTH = 512  # the usual recipe pads every example to this
USUAL_BATCH_SIZE = 16
# 16 x 512 tokens in one forward pass was killed by the OOM killer on SmolLM2-135M with 24 GB of
# RAM (measured), so the usual recipe does what its users then do: 4 x 4 gradient accumulation.
USUAL_MICRO_BATCH = 4
USUAL_SEQ2SEQ_TARGET_LENGTH = 128  # usual summarisation notebooks pad targets to 128
USUAL_LORA_DROPOUT = 0.05  # LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05) in the usual notebooks


def _statista(name: str, model: str, task: str, prompt: str, n_train: int, n_test: int, batch_size: int,
              max_source_length: int, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """Statista table-to-title with LoRA r=16, as a one-method peftlab experiment."""
    return {
        "name": name,
        "model": model,
        "task": task,
        "data": {
            "train": "statista/train.jsonl",
            "test": "statista/test.jsonl",
            "prompt": prompt,
            "target": "title",
            "max_train_examples": n_train,
            "max_test_examples": n_test,
        },
        "methods": [{"name": "lora", "r": 16, "alpha": 32}],
        "training": {"epochs": 1, "batch_size": batch_size, "max_source_length": max_source_length,
                     "max_target_length": 48, "seed": seed},
        "evaluation": {"max_new_tokens": max_new_tokens, "batch_size": 25},
    }


def statista_smollm2(n_train: int, n_test: int, batch_size: int, max_new_tokens: int = 40,
                     seed: int = 42) -> dict[str, Any]:
    """The main case: LoRA r=16 on SmolLM2-135M-Instruct, statista table-to-title."""
    return _statista("bench-statista-smollm2", "smollm2-135m-instruct-gguf", "causal-lm",
                     "Write the title of this table:\n{table}", n_train, n_test, batch_size, 160, max_new_tokens, seed)


def fpb_minilm(n_train: int, n_test: int, batch_size: int, seed: int = 42) -> dict[str, Any]:
    """Classification: LoRA r=16 on all-MiniLM-L6-v2, financial_phrasebank sentiment."""
    return {
        "name": "bench-fpb-minilm",
        "model": "all-minilm-l6-v2",
        "task": "classification",
        "data": {
            "train": "financial_phrasebank/train.jsonl",
            "test": "financial_phrasebank/test.jsonl",
            "input": "text",
            "label": "label",
            "max_train_examples": n_train,
            "max_test_examples": n_test,
        },
        "methods": [{"name": "lora", "r": 16, "alpha": 32}],
        "training": {"epochs": 1, "batch_size": batch_size, "max_source_length": 96, "seed": seed},
        "evaluation": {"batch_size": 64},
    }


def statista_t5(model_dir: Path, n_train: int, n_test: int, batch_size: int, max_new_tokens: int = 40,
                seed: int = 42) -> dict[str, Any]:
    """seq2seq: LoRA r=16 on a small randomly initialised T5 (no pretrained one is available)."""
    return _statista("bench-statista-t5", str(model_dir), "seq2seq", "title: {table}",
                     n_train, n_test, batch_size, 256, max_new_tokens, seed)


def build_small_t5(out: Path, tokenizer_dir: Path) -> Path:
    """A 4-layer, d_model 256 T5 with MiniLM's WordPiece tokenizer, randomly initialised."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    if (out / "config.json").is_file():
        return out
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = T5Config(vocab_size=len(tok), d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_heads=8,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
                   decoder_start_token_id=tok.pad_token_id, dropout_rate=0.0)
    torch.manual_seed(0)
    T5ForConditionalGeneration(cfg).save_pretrained(out)
    tok.eos_token = tok.sep_token
    tok.save_pretrained(out)
    return out


# A GPU runs the CPU's training sizes in a few steps and seconds, which measures start-up
# (kernel selection, allocator growth, the first autocast casts) rather than training: the
# H100 run of session 3 timed 3 steps. On CUDA the full cases train on this many times the rows.
CUDA_TRAIN_SCALE = 10


def statista_stories(n_train: int = 8, n_test: int = 4) -> dict[str, Any]:
    """The tiny case (`--tiny`, run by the default test suite): LoRA r=16 on stories260k (a 260k-parameter
    llama with 512 positions), a few statista rows. It checks that the benchmark runs end to end;
    its figures say nothing about the speed of a real model."""
    case = _statista("bench-statista-stories", "stories260k", "causal-lm", "Table: {table}\nTitle:",
                     n_train, n_test, 4, 48, 4, 42)
    case["training"]["max_target_length"] = 16
    return case


def cases(quick: bool, work: Path, models_dir: Path, cuda: bool = False, tiny: bool = False) -> list[dict[str, Any]]:
    if tiny:
        return [statista_stories()]
    if quick:
        return [statista_smollm2(n_train=4, n_test=4, batch_size=4, max_new_tokens=16)]
    t5 = build_small_t5(work / "small-t5", models_dir / "all-minilm-l6-v2")
    k = CUDA_TRAIN_SCALE if cuda else 1
    return [
        statista_smollm2(n_train=48 * k, n_test=40, batch_size=USUAL_BATCH_SIZE),
        fpb_minilm(n_train=160 * k, n_test=200, batch_size=USUAL_BATCH_SIZE),
        statista_t5(t5, n_train=128 * k, n_test=64, batch_size=USUAL_BATCH_SIZE),
    ]
