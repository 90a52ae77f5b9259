"""Method defaults that the method x task matrix does not pin down."""

from __future__ import annotations

from typing import Any

import torch
from conftest import STORIES, causal_task, needs_shared, stories_with_method


@needs_shared
def test_prefix_tuning_starts_as_the_models_own_keys_and_values_for_text() -> None:
    """Text initialisation: the untrained prefix acts exactly as if the init text preceded the input,
    so the model starts from its pretrained behaviour instead of random keys and values."""
    from transformers import AutoModelForCausalLM

    task = causal_task(STORIES)
    model = stories_with_method(task, "prefix-tuning").eval()
    n = model.active_peft_config.num_virtual_tokens
    text = task.tok("Table:", add_special_tokens=False)["input_ids"]
    prefix = (text * (n // len(text) + 1))[:n]
    x = task.tok("Once upon a time there was a little girl", add_special_tokens=False)["input_ids"]

    base = AutoModelForCausalLM.from_pretrained(STORIES).eval()
    with torch.no_grad():
        got = model(input_ids=torch.tensor([x])).logits[0]
        want = base(input_ids=torch.tensor([prefix + x])).logits[0, n:]
        no_prefix = base(input_ids=torch.tensor([x])).logits[0]
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert not torch.allclose(got, no_prefix, atol=1e-2)  # the prefix is really there


@needs_shared
def test_prefix_tuning_random_init_is_still_available() -> None:
    from transformers import AutoModelForCausalLM

    from peftlab.methods import MethodContext, get_method

    task = causal_task(STORIES)
    base = AutoModelForCausalLM.from_pretrained(STORIES)
    m = get_method("prefix-tuning")
    ctx = MethodContext(task="causal-lm", model_type="llama", total_steps=1, prompt_text="Table:", tokenizer=task.tok)
    model = m.apply(base, m.parse_options({"random_init": True}), ctx)
    w = model.prompt_encoder[model.active_adapter].embedding.weight
    assert 0.8 < float(w.detach().std()) < 1.2  # peft's unit-normal start


def _adalora_on_stories(total_steps: int, **options: int) -> tuple[Any, Any, Any]:
    """(causal task, the adalora Method, stories260k wrapped in AdaLoRA) for `total_steps`."""
    from transformers import AutoModelForCausalLM

    from peftlab.methods import MethodContext, get_method

    task = causal_task(STORIES)
    base = AutoModelForCausalLM.from_pretrained(STORIES)
    task.prepare_model(base)
    m = get_method("adalora")
    ctx = MethodContext(task="causal-lm", model_type="llama", total_steps=total_steps, prompt_text="Table:")
    return task, m, m.apply(base, m.parse_options(options), ctx)


@needs_shared
def test_adalora_training_loss_carries_its_orthogonality_penalty(tmp_path) -> None:  # noqa: ANN001
    """peftlab computes the causal-lm loss outside the model, where peft would not add AdaLoRA's
    penalty: the trainer adds it, so the training loss equals peft's own (model computes the
    loss from labels); evaluation losses leave it out, to compare across methods."""
    from transformers import TrainingArguments

    from peftlab.data.prepare import Example
    from peftlab.train.trainer import PeftlabTrainer

    task, m, model = _adalora_on_stories(total_steps=100)
    batch = task.collate([task.encode(Example(source=f"Table: row {i} " * (i + 1), target="a title " * (i + 2)))
                          for i in range(3)])
    trainer = PeftlabTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                  report_to="none"),
                             task=task, extra_loss=m.extra_loss)
    model.train()
    with torch.no_grad():
        ours = float(trainer.compute_loss(model, dict(batch)))
        peft_own = float(model(**batch).loss)
        plain = float(task.loss(model, dict(batch)))
        penalty = float(m.extra_loss(model, batch))
        model.eval()
        evaluated = float(trainer.compute_loss(model, dict(batch)))
    assert penalty > 0.5  # random P and Q are far from orthogonal at the start
    assert abs(ours - peft_own) < 1e-4, (ours, peft_own)
    assert abs(ours - plain - penalty) < 1e-4
    assert abs(evaluated - plain) < 1e-4


@needs_shared
def test_shadow_training_loss_carries_its_auxiliary_loss(tmp_path) -> None:  # noqa: ANN001
    """ShadowPEFT's own loss (the LM head on the initial shadow state) is in the training loss as
    peft computes it with labels, though peftlab computes the task loss from the logits; the
    evaluation loss leaves it out; and it trains the shadow backbone (its gradient is not zero)."""
    from transformers import TrainingArguments

    from peftlab.data.prepare import Example
    from peftlab.methods import get_method
    from peftlab.train.trainer import PeftlabTrainer

    task = causal_task(STORIES)
    torch.manual_seed(0)
    model = stories_with_method(task, "shadow")
    m = get_method("shadow")
    batch = task.collate([task.encode(Example(source=f"Table: row {i} " * (i + 1), target="a title " * (i + 2)))
                          for i in range(3)])
    trainer = PeftlabTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                  report_to="none"),
                             task=task, extra_loss=m.extra_loss)
    model.train()
    torch.manual_seed(1)
    ours = trainer.compute_loss(model, dict(batch))
    torch.manual_seed(1)  # the same dropout draws
    with torch.no_grad():
        peft_own = float(model(**batch).loss)
        plain = float(task.loss(model, dict(batch)))
        aux = float(m.extra_loss(model, batch))
    assert aux > 0.05 * 1.0  # weight 0.05 x a cross-entropy of several nats from an untrained path
    assert abs(float(ours) - peft_own) < 1e-4, (float(ours), peft_own)
    ours.backward()
    shadow_grads = [p.grad for n, p in model.named_parameters() if "shadow_backbone" in n and p.requires_grad]
    assert shadow_grads and any(g is not None and float(g.abs().sum()) > 0 for g in shadow_grads)
    model.eval()
    with torch.no_grad():
        evaluated = float(trainer.compute_loss(model, dict(batch)))
        assert abs(evaluated - float(task.loss(model, dict(batch)))) < 1e-5
    assert plain > 0


@needs_shared
def test_adalora_prunes_ranks_to_its_budget_during_training(tmp_path) -> None:  # noqa: ANN001
    """The method's own callback runs peft's `update_and_allocate` while gradients exist: after
    training, ranks are masked down to the target budget (init_r 4 -> target_r 2 on average).
    The orthogonality penalty inside the training loss is logged beside it (`extra_loss`)."""
    from transformers import TrainingArguments

    from peftlab.data.prepare import Example
    from peftlab.train.trainer import PeftlabTrainer

    steps = 10
    task, m, model = _adalora_on_stories(total_steps=steps, init_r=4, target_r=2)
    feats = [task.encode(Example(source=f"Table: row {i} " * (i % 4 + 1), target="a title " * (i % 3 + 1)))
             for i in range(steps * 2)]
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=steps,
                             per_device_train_batch_size=2, learning_rate=m.learning_rate("causal-lm"),
                             remove_unused_columns=False, label_names=["labels"], save_strategy="no",
                             logging_steps=5)
    trainer = PeftlabTrainer(model=model, args=args, train_dataset=feats, data_collator=task.collate,
                             callbacks=m.callbacks(model), task=task, extra_loss=m.extra_loss)
    trainer.train()

    pattern = model.peft_config["default"].rank_pattern
    assert pattern, "update_and_allocate never set a rank pattern"
    kept = sum(int(torch.as_tensor(v).sum()) for v in pattern.values())
    assert kept <= 2 * len(pattern) < 4 * len(pattern)  # the budget, below the starting ranks
    zeros = sum(int((e == 0).sum()) for n, e in model.named_parameters() if "lora_E" in n)
    assert zeros >= 4 * len(pattern) - kept  # pruned singular values are masked to zero
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(0 < h["extra_loss"] < h["loss"] for h in logged)  # the penalty, read apart


def test_merge_refusal_is_the_one_reason_every_export_path_gives() -> None:
    """The merged export (CLI `--merge`, the web page's Export) says why a run cannot be merged from
    one trait: nothing to merge (zero-shot, full), or no weight delta (virtual tokens, input-
    dependent modules); a mergeable method has no refusal."""
    from peftlab.methods import REGISTRY
    from peftlab.serve.routers.export import merge_trait

    for name, m in REGISTRY.items():
        why = m.merge_refusal
        assert (why is None) == (m.mergeable and not m.is_full and not m.is_baseline), name
        assert merge_trait(name) == (why is None, why)
    assert "trains nothing" in REGISTRY["zero-shot"].merge_refusal
    assert "already a whole model" in REGISTRY["full"].merge_refusal
    assert "virtual tokens" in REGISTRY["prompt-tuning"].merge_refusal
    assert merge_trait("no-such-method") == (False, "no-such-method: not a method of this peftlab version")
