"""tasks/generation.py: the shared-prefix prefill gives what plain `generate` gives."""

from __future__ import annotations

import pytest
import torch
from conftest import STORIES, causal_task, needs_shared, stories_with_method

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
    assert list(shared) == list(plain)
    assert any(text for text, _ in shared)
    if scored:
        assert shared.tokens == plain.tokens == sum(len(t) for t in targets)
        assert abs(shared.loss_sum - plain.loss_sum) < 1e-3 * plain.tokens, (shared.loss_sum, plain.loss_sum)


def test_shared_prefix_length() -> None:
    common = list(range(100, 100 + MIN_SHARED_PREFIX + 3))
    assert _shared_prefix([common + [1, 2, 3], common + [4, 5]]) == len(common)
    # every row keeps two tokens of its own, so the prefix never swallows a whole prompt
    assert _shared_prefix([common + [1, 2], common + [1, 2]]) == len(common)
    assert _shared_prefix([common[:4] + [1, 2], common[:4] + [3, 4]]) == 0  # too short to pay
