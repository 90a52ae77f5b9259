"""causal-lm formatting: chat template when the model has one, identical at train and
inference, loss only on the completion, EOS appended, truncation counted."""

from __future__ import annotations

import pytest
from conftest import SMOLLM, STORIES, causal_task, needs_shared, stories_with_method

from peftlab.config.schema import EvaluationConfig
from peftlab.data.prepare import Example
from peftlab.tasks.causal_lm import CausalLMTask, keep_count

pytestmark = needs_shared


def test_chat_template_and_eos() -> None:
    task = causal_task(SMOLLM)
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
    task = causal_task(STORIES)
    ex = Example(source="Table: x\nTitle:", target="A title", references=["A title"])
    f = task.encode(ex)
    assert f["input_ids"][0] == task.tok.bos_token_id
    assert f["input_ids"][-1] == task.tok.eos_token_id
    assert f["input_ids"].count(task.tok.bos_token_id) == 1


def test_truncation_keeps_template_and_counts() -> None:
    task = causal_task(SMOLLM, max_source_length=64, max_target_length=8)
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


def _lengths_batch(task: CausalLMTask) -> dict:
    rows = [("Table: " + "x y " * n, "title " * m) for n, m in ((3, 2), (20, 1), (9, 6), (1, 9))]
    feats = [task.encode(Example(source=s, target=t, references=[t])) for s, t in rows]
    return task.collate(feats)


@pytest.mark.parametrize("method", ["lora", "prompt-tuning", "prefix-tuning"])
def test_completion_only_logits_give_the_models_own_loss(method: str) -> None:
    """Logits for the last k positions only: the same loss as the full forward, and far
    fewer logits (the saving #5 measures)."""
    import torch

    task = causal_task(STORIES)
    model = stories_with_method(task, method)
    assert task.keep_logits
    batch = _lengths_batch(task)
    with torch.no_grad():
        full = model(**batch).loss
        ours = task.loss(model, batch)
        n_items = int((batch["labels"][:, 1:] != -100).sum())
        summed = task.loss(model, batch, num_items=n_items)
    assert torch.allclose(full, ours, atol=1e-5), (full, ours)
    assert torch.allclose(ours, summed, atol=1e-6)
    k = keep_count(batch["labels"])
    assert 2 <= k < batch["labels"].shape[1]


@pytest.mark.parametrize("method", ["lora", "prefix-tuning"])
def test_one_pass_test_loss_and_generation_match_separate_passes(method: str) -> None:
    """evaluate() scores the references and generates from one prompt pass per batch; the
    loss and every output equal a separate loss pass plus generation (prompt methods'
    virtual tokens head the cache: see tests/test_generation.py)."""
    from peftlab.tasks.base import Task

    task = causal_task(STORIES)
    task.evaluation = EvaluationConfig(max_new_tokens=12, batch_size=3)
    model = stories_with_method(task, method)
    exs = [Example(source="Table: " + "x y " * n, target="the title " * k, references=["t"])
           for n, k in ((3, 2), (20, 1), (9, 6), (1, 9), (14, 3))]
    loss, preds = task.evaluate(model, exs)
    ref_loss, ref_preds = Task.evaluate(task, model, exs)
    assert abs(loss - ref_loss) < 1e-4, (loss, ref_loss)
    assert [p.output for p in preds] == [p.output for p in ref_preds]
    assert [p.stopped for p in preds] == [p.stopped for p in ref_preds]
