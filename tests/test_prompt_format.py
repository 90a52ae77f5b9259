"""causal-lm formatting: chat template when the model has one, identical at train and
inference, loss only on the completion, EOS appended, truncation counted."""

from __future__ import annotations

from conftest import SMOLLM, STORIES, needs_shared
from transformers import AutoTokenizer

from peftlab.config.schema import EvaluationConfig, TrainingConfig
from peftlab.data.prepare import Example
from peftlab.tasks.causal_lm import CausalLMTask

pytestmark = needs_shared


def _task(path, **tr) -> CausalLMTask:
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return CausalLMTask(tok, None, TrainingConfig(**tr), EvaluationConfig())


def test_chat_template_and_eos() -> None:
    task = _task(SMOLLM)
    ex = Example(source="Write the title:\n0 Year: 2018", target="Attendance 2018", references=["Attendance 2018"])
    f = task.encode(ex)
    text = task.tok.decode(f["input_ids"])
    assert text.startswith("<|im_start|>system")
    assert "<|im_start|>user\nWrite the title:\n0 Year: 2018<|im_end|>\n<|im_start|>assistant\n" in text
    assert text.endswith("Attendance 2018<|im_end|>")  # the end-of-turn token is the learned stop
    # Loss only on the completion: every prompt token is masked.
    n_prompt = len(task.prompt(ex.source))
    assert f["labels"][:n_prompt] == [-100] * n_prompt
    assert f["labels"][n_prompt:] == f["input_ids"][n_prompt:]
    # Inference uses exactly the training prompt.
    assert f["input_ids"][:n_prompt] == task.prompt(ex.source)


def test_plain_model_bos_prompt_eos() -> None:
    task = _task(STORIES)
    ex = Example(source="Table: x\nTitle:", target="A title", references=["A title"])
    f = task.encode(ex)
    assert f["input_ids"][0] == task.tok.bos_token_id
    assert f["input_ids"][-1] == task.tok.eos_token_id
    assert f["input_ids"].count(task.tok.bos_token_id) == 1


def test_truncation_keeps_template_and_counts() -> None:
    task = _task(SMOLLM, max_source_length=64, max_target_length=8)
    ex = Example(source="word " * 500, target="short title here and more words " * 3, references=["x"])
    f = task.encode(ex)
    text = task.tok.decode(f["input_ids"])
    assert "<|im_start|>assistant\n" in text  # the suffix survives truncation of the content
    assert len(task.prompt(ex.source)) <= 64
    assert f["input_ids"][-1] == task.fmt.eos_id
    assert task.truncated == 1
    batch = task.collate([f, task.encode(Example(source="a", target="b", references=["b"]))])
    assert batch["input_ids"].shape[0] == 2
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == -100).all()
