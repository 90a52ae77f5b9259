"""tasks/generation.py: the shared-prefix prefill gives what plain `generate` gives."""

from __future__ import annotations

import pytest
import torch
from conftest import STORIES, causal_task, needs_shared, stories_with_method

from peftlab.compat import prompt_learning_broken
from peftlab.config.schema import EvaluationConfig
from peftlab.tasks.causal_lm import stop_ids
from peftlab.tasks.generation import MIN_SHARED_PREFIX, _shared_prefix, generate_batched

pytestmark = needs_shared

INSTRUCTION = "Write a short title for the following table of numbers:\n"


def _setup(method: str):
    task = causal_task(STORIES)
    torch.manual_seed(0)
    model = stories_with_method(task, method)
    for name, p in model.named_parameters():  # a trained-looking adapter: B is no longer zero
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.eval()
    sources = [INSTRUCTION + "row " * n + "end" for n in (3, 20, 9, 1, 14, 6, 11)]
    prompts = [task.prompt(s) for s in sources]
    targets = [task.fmt.target_ids("the title " * k, 16)[0] for k in (2, 1, 6, 3, 2, 4, 1)]
    return task, model, prompts, targets


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("scored", [False, True])
def test_shared_prefix_matches_plain_generate(method: str, scored: bool) -> None:
    task, model, prompts, targets = _setup(method)
    ecfg = EvaluationConfig(max_new_tokens=10, batch_size=4)
    assert _shared_prefix(prompts[:4]) >= MIN_SHARED_PREFIX  # the path under test really runs
    kw = {"targets": targets} if scored else {}
    shared = generate_batched(model, task.tok, prompts, ecfg, stop_ids(task.tok), **kw)
    plain = generate_batched(model, task.tok, prompts, ecfg, stop_ids(task.tok), share_prefix=False, **kw)
    assert shared.outputs == plain.outputs
    assert any(text for text, _ in shared.outputs)
    if scored:
        assert shared.tokens == plain.tokens == sum(len(t) for t in targets)
        assert abs(shared.loss_sum - plain.loss_sum) < 1e-3 * plain.tokens, (shared.loss_sum, plain.loss_sum)


def test_shared_prefix_length() -> None:
    common = list(range(100, 100 + MIN_SHARED_PREFIX + 3))
    assert _shared_prefix([common + [1, 2, 3], common + [4, 5]]) == len(common)
    # every row keeps two tokens of its own, so the prefix never swallows a whole prompt
    assert _shared_prefix([common + [1, 2], common + [1, 2]]) == len(common)
    assert _shared_prefix([common[:4] + [1, 2], common[:4] + [3, 4]]) == 0  # too short to pay


def _trained_looking_prompt(method: str):
    task, model, prompts, targets = _setup(method)
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1 * p.std())
    return task, model, prompts, targets


def _reference_logits(model, ids: list[int]) -> torch.Tensor:
    """Next-token logits of [virtual tokens | ids], computed from scratch with no cache: the soft
    prompt's embeddings (prompt-/p-tuning) or prefix keys and values (prefix-tuning) are fed to
    the base model explicitly, at the positions training gives them."""
    from peft import PeftType

    from peftlab.compat import cache_kw

    base = model.get_base_model()
    cfg = model.active_peft_config
    v = cfg.num_virtual_tokens
    x = torch.tensor([ids])
    if cfg.peft_type == PeftType.PREFIX_TUNING:  # keys/values of v positions, then the text at v..v+n-1
        out = base(input_ids=x, attention_mask=torch.ones(1, v + len(ids), dtype=torch.long),
                   position_ids=torch.arange(v, v + len(ids))[None], **cache_kw(model.get_prompt(batch_size=1)))
    else:  # embeddings of the virtual tokens, then of the text, at positions 0..v+n-1
        emb = torch.cat([model.get_prompt(batch_size=1), base.get_input_embeddings()(x)], dim=1)
        out = base(inputs_embeds=emb, attention_mask=torch.ones(1, v + len(ids), dtype=torch.long))
    return out.logits[0, -1]


def _reference_greedy(model, tok, prompts: list[list[int]], n: int, stop: list[int]) -> list[tuple[str, bool]]:
    """Greedy decoding one token at a time, every step recomputed from scratch (`_reference_logits`)."""
    outs = []
    with torch.inference_mode():
        for p in prompts:
            new: list[int] = []
            while len(new) < n and not (new and new[-1] in stop):
                new.append(int(_reference_logits(model, p + new).argmax()))
            stopped = bool(new) and new[-1] in stop
            outs.append((tok.decode(new[:-1] if stopped else new, skip_special_tokens=True).strip(), stopped))
    return outs


@pytest.mark.parametrize("method", ["prefix-tuning", "prompt-tuning", "p-tuning"])
def test_virtual_tokens_as_cache_head_match_step_by_step_reference(method: str) -> None:
    """peftlab's path (virtual tokens as the head of the cache, shared prefix, batches) gives the
    outputs of the plain reference. The reference is the trained model: its first-step logits
    equal those of peft's own forward, which training uses."""
    task, model, prompts, _ = _trained_looking_prompt(method)
    model.eval()
    with torch.inference_mode():
        peft_logits = model(input_ids=torch.tensor([prompts[0]])).logits[0, -1]
        assert torch.allclose(_reference_logits(model, prompts[0]), peft_logits, atol=1e-4)
    stop = stop_ids(task.tok)
    reference = _reference_greedy(model, task.tok, prompts, 10, stop)
    for bs in (1, 4):
        fast = generate_batched(model, task.tok, prompts, EvaluationConfig(max_new_tokens=10, batch_size=bs), stop)
        assert fast.outputs == reference, bs
    assert any(text for text, _ in reference)


@pytest.mark.parametrize("method", ["prefix-tuning", "prompt-tuning", "p-tuning"])
@pytest.mark.xfail(prompt_learning_broken(), strict=True,
                   reason="peft 0.21's generate misses the KV cache under transformers >= 5.24 (peftlab.compat)")
def test_peft_generate_matches_step_by_step_reference(method: str) -> None:
    """peft's own `generate` (used for beam search and seq2seq) against the same reference. On the
    pair that breaks it the test must fail, which is what preflight's refusal rests on."""
    task, model, prompts, _ = _trained_looking_prompt(method)
    stop = stop_ids(task.tok)
    plain = generate_batched(model, task.tok, prompts, EvaluationConfig(max_new_tokens=10, batch_size=1), stop,
                             share_prefix=False)
    assert plain.outputs == _reference_greedy(model, task.tok, prompts, 10, stop)


@pytest.mark.parametrize("method", ["prefix-tuning", "prompt-tuning", "p-tuning"])
def test_virtual_tokens_batched_and_scored(method: str) -> None:
    """In padded batches the outputs equal the one-at-a-time ones, and the one-pass test loss
    equals the training-style loss pass through peft's own forward."""
    from peftlab.data.prepare import Example
    from peftlab.tasks.base import Task

    task, model, prompts, targets = _trained_looking_prompt(method)
    one = generate_batched(model, task.tok, prompts, EvaluationConfig(max_new_tokens=10, batch_size=1),
                           stop_ids(task.tok))
    batched = generate_batched(model, task.tok, prompts, EvaluationConfig(max_new_tokens=10, batch_size=4),
                               stop_ids(task.tok), targets=targets)
    assert batched.outputs == one.outputs
    examples = [Example(source=INSTRUCTION + "row " * n + "end", target="the title " * k)
                for n, k in zip((3, 20, 9, 1, 14, 6, 11), (2, 1, 6, 3, 2, 4, 1), strict=True)]
    task.evaluation = EvaluationConfig(max_new_tokens=10, batch_size=4)
    fast_loss, _ = task.evaluate(model, examples)
    pass_loss, _ = Task.evaluate(task, model, examples)
    assert abs(fast_loss - pass_loss) < 1e-3, (fast_loss, pass_loss)


@pytest.mark.parametrize("method", ["lora", "prompt-tuning"])
def test_dropping_stopped_rows_keeps_the_outputs(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that have stopped leave the batch (the next `generate` call goes on without them):
    the outputs and the one-pass test loss equal one call per batch decoding them to the end."""
    from peftlab.tasks import generation

    task, model, prompts, targets = _setup(method) if method == "lora" else _trained_looking_prompt(method)
    ecfg = EvaluationConfig(max_new_tokens=40, batch_size=7)
    stop = stop_ids(task.tok)
    # this tiny model rarely ends on its own: also stop on a token that some outputs hold, not all
    outs = [task.tok(text, add_special_tokens=False)["input_ids"] for text, _ in
            generate_batched(model, task.tok, prompts, ecfg, stop).outputs]
    stop = stop + [next(t for t in sorted({t for o in outs for t in o})
                        if 1 < sum(t in o[5:] for o in outs) < len(outs) - 1)]
    gen = model.get_base_model() if method == "prompt-tuning" else model
    calls = []
    real = gen.generate
    monkeypatch.setattr(gen, "generate", lambda *a, **kw: calls.append(kw["input_ids"].shape[0]) or real(*a, **kw))
    pruned = generate_batched(model, task.tok, prompts, ecfg, stop, targets=targets)
    rows_per_call = list(calls)
    monkeypatch.setattr(generation, "PRUNE_AT", 0)
    whole = generate_batched(model, task.tok, prompts, ecfg, stop, targets=targets)
    assert pruned.outputs == whole.outputs
    assert abs(pruned.loss_sum - whole.loss_sum) < 1e-6 * whole.tokens
    stopped = sum(s for _, s in whole.outputs)
    assert 0 < stopped < len(prompts), "the case needs rows that stop and rows that run on"
    # the batch of 7 shrank: later calls decoded fewer rows
    assert rows_per_call[0] == 7 and len(rows_per_call) > 1 and rows_per_call[-1] < 7, rows_per_call
