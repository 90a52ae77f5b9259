"""Batched greedy/beam generation: left padding, KV cache, batches sorted by length.

Sorting by prompt length keeps padding small; `generate` stops a batch as soon as every
sequence has produced a stop token. We record whether each output stopped on its own
(learned EOS) or ran into max_new_tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from peftlab.config.schema import EvaluationConfig
from peftlab.device import autocast


def generate_batched(
    model: Any,
    tok: Any,
    prompts: list[list[int]],
    ecfg: EvaluationConfig,
    stop: list[int],
    decoder_only: bool = True,
    desc: str = "generate",
    precision: str = "fp32",
    targets: list[list[int]] | None = None,
) -> list[tuple[str, bool]]:
    """Greedy/beam outputs for `prompts`, as (text, stopped) in the input order.

    With `targets` (decoder-only, greedy), each batch's prompt forward pass also scores the
    reference completions: one pass over [left-padded prompt | target] gives the targets'
    loss, its cache cropped to the prompt seeds `generate`, so the test loss costs no second
    pass over the prompts. The summed loss and token count come back on the returned
    list (a `Generated`).
    """
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[tuple[str, bool] | None] = [None] * len(prompts)
    pad = tok.pad_token_id
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bs = ecfg.batch_size
    scored = Generated()
    try:
        with torch.inference_mode(), autocast(precision):
            for start in tqdm(range(0, len(order), bs), desc=desc, unit="batch", leave=False):
                idx = order[start : start + bs]
                n = max(len(prompts[i]) for i in idx)
                ids = torch.full((len(idx), n), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), n), dtype=torch.long)
                for row, i in enumerate(idx):
                    p = prompts[i]
                    if decoder_only:
                        ids[row, n - len(p) :] = torch.tensor(p)
                        mask[row, n - len(p) :] = 1
                    else:
                        ids[row, : len(p)] = torch.tensor(p)
                        mask[row, : len(p)] = 1
                ids, mask = ids.to(dev), mask.to(dev)
                cache = None
                if targets is not None:  # the caller checked: decoder-only, greedy, no virtual tokens
                    cache = _score_targets(model, ids, mask, [targets[i] for i in idx], pad, scored)
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    past_key_values=cache,
                    max_new_tokens=ecfg.max_new_tokens,
                    do_sample=False,
                    num_beams=ecfg.num_beams,
                    repetition_penalty=ecfg.repetition_penalty,
                    no_repeat_ngram_size=ecfg.no_repeat_ngram_size,
                    eos_token_id=stop,
                    pad_token_id=pad,
                )
                new = out[:, n:] if decoder_only else out[:, 1:]
                for row, i in enumerate(idx):
                    toks = new[row].tolist()
                    cut = next((k for k, t in enumerate(toks) if t in stop), None)
                    stopped = cut is not None
                    toks = toks[:cut] if stopped else toks
                    results[i] = (tok.decode(toks, skip_special_tokens=True).strip(), stopped)
    finally:
        model.train(was_training)
    scored.extend(r for r in results if r is not None)
    return scored


class Generated(list):
    """(text, stopped) per prompt, plus the targets' summed loss and token count when scored."""

    loss_sum = 0.0
    tokens = 0


def has_virtual_tokens(model: Any) -> bool:
    """Prompt-learning adapters (prefix/prompt/p-tuning) manage their own cache in generate."""
    cfg = getattr(model, "active_peft_config", None)
    return bool(getattr(cfg, "is_prompt_learning", False))


def _score_targets(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, targets: list[list[int]], pad: int, acc: Generated
) -> Any:
    """Forward [prompt | target] once; add the targets' loss to `acc`; return the prompt's cache.

    The cache is cropped to all but the last prompt position, so `generate` feeds that last
    token itself and computes the first new token's logits exactly as without a cache.
    """
    m = max(len(t) for t in targets)
    tgt = torch.full((len(targets), m), pad, dtype=torch.long, device=ids.device)
    labels = torch.full((len(targets), m), -100, dtype=torch.long, device=ids.device)
    for row, t in enumerate(targets):
        tgt[row, : len(t)] = torch.tensor(t)
        labels[row, : len(t)] = torch.tensor(t)
    full_mask = torch.cat([mask, (labels != -100).long()], dim=1)
    position_ids = (full_mask.cumsum(-1) - 1).clamp(min=0)  # as generate computes them for left padding
    out = model(input_ids=torch.cat([ids, tgt], dim=1), attention_mask=full_mask, position_ids=position_ids,
                use_cache=True, logits_to_keep=m + 1)
    logits = out.logits[:, :m].float()  # the last prompt position and targets 0..m-2 predict targets 0..m-1
    acc.loss_sum += float(torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"))
    acc.tokens += int((labels != -100).sum())
    cache = out.past_key_values
    cache.crop(-(m + 1))  # drop the targets and the last prompt position
    return cache
