"""Batched greedy/beam generation: left padding, KV cache, batches sorted by length.

Sorting by prompt length keeps padding small; `generate` stops a batch as soon as every
sequence has produced a stop token. We record whether each output stopped on its own
(learned EOS) or ran into max_new_tokens.

Prompts that share a beginning (the chat template's system turn and the instruction come
before every input) have that prefix computed once per batch, at batch size 1, and its KV
cache repeated over the rows: each batch then computes only the differing suffixes, laid out
as [shared prefix | left padding | suffix] with the padding masked.
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from peftlab.config.schema import EvaluationConfig
from peftlab.device import autocast

MIN_SHARED_PREFIX = 8  # tokens: below this, a separate prefix pass is not worth its call


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
    share_prefix: bool = True,
) -> list[tuple[str, bool]]:
    """Greedy/beam outputs for `prompts`, as (text, stopped) in the input order.

    With `targets` (decoder-only, greedy), each batch's prompt forward pass also scores the
    reference completions: one pass over [left-padded prompt | target] gives the targets'
    loss, its cache cropped to the prompt seeds `generate`, so the test loss costs no second
    pass over the prompts. The summed loss and token count come back on the returned
    list (a `Generated`).

    `share_prefix` (decoder-only, greedy, no virtual tokens) computes the prompts' common
    beginning once per batch; False gives plain `generate` prefill (tests compare the two).
    """
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[tuple[str, bool] | None] = [None] * len(prompts)
    pad = tok.pad_token_id
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bs = ecfg.batch_size
    scored = Generated()
    share_prefix = share_prefix and decoder_only and ecfg.num_beams == 1 and not has_virtual_tokens(model)
    try:
        with torch.inference_mode(), autocast(precision):
            for start in tqdm(range(0, len(order), bs), desc=desc, unit="batch", leave=False):
                idx = order[start : start + bs]
                rows = [prompts[i] for i in idx]
                shared = _shared_prefix(rows) if share_prefix else 0
                ids, mask = _pad_batch(rows, shared, pad, decoder_only)
                ids, mask = ids.to(dev), mask.to(dev)
                n = ids.shape[1]
                cache = None
                if targets is not None or shared:  # targets: the caller checked decoder-only, greedy, no virtual tokens
                    tgts = [targets[i] for i in idx] if targets is not None else None
                    cache = _prefill(model, ids, mask, shared, tgts, pad, scored)
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


def _shared_prefix(rows: list[list[int]]) -> int:
    """Length of the batch's common prompt beginning, leaving every row at least two tokens of
    its own (the last one `generate` feeds itself); 0 when too short to be worth a pass."""
    limit = min(len(r) for r in rows) - 2
    k = 0
    first = rows[0]
    while k < limit and all(r[k] == first[k] for r in rows):
        k += 1
    return k if k >= MIN_SHARED_PREFIX else 0


def _pad_batch(rows: list[list[int]], shared: int, pad: int, decoder_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder-only: [shared prefix | left padding | rest of the prompt]; encoder inputs: right padding."""
    n = shared + max(len(r) - shared for r in rows)
    ids = torch.full((len(rows), n), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for row, p in enumerate(rows):
        if decoder_only:
            ids[row, :shared], mask[row, :shared] = torch.tensor(p[:shared]), 1
            ids[row, n - len(p) + shared :] = torch.tensor(p[shared:])
            mask[row, n - len(p) + shared :] = 1
        else:
            ids[row, : len(p)] = torch.tensor(p)
            mask[row, : len(p)] = 1
    return ids, mask


def _prefill(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, shared: int, targets: list[list[int]] | None, pad: int,
    acc: Generated,
) -> Any:
    """The prompts' KV cache for `generate`, computed here rather than by `generate`:
    - the first `shared` positions once, at batch size 1, then repeated over the rows;
    - with `targets`, the rest of the prompt and the reference completions in one pass, whose
      loss is added to `acc` (the test loss costs no second pass over the prompts).
    The cache ends one position short of the prompt, so `generate` feeds the last prompt token
    itself and computes the first new token's logits exactly as without a cache.
    """
    cache = None
    if shared:
        cache = model(input_ids=ids[:1, :shared], use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(ids.shape[0])
    if targets is None:
        full_mask, rest = mask[:, :-1], ids[:, shared:-1]
        m = 0
    else:
        m = max(len(t) for t in targets)
        tgt = torch.full((len(targets), m), pad, dtype=torch.long, device=ids.device)
        labels = torch.full((len(targets), m), -100, dtype=torch.long, device=ids.device)
        for row, t in enumerate(targets):
            tgt[row, : len(t)] = torch.tensor(t)
            labels[row, : len(t)] = torch.tensor(t)
        full_mask = torch.cat([mask, (labels != -100).long()], dim=1)
        rest = torch.cat([ids[:, shared:], tgt], dim=1)
    position_ids = (full_mask.cumsum(-1) - 1).clamp(min=0)  # as generate computes them from the mask
    out = model(input_ids=rest, attention_mask=full_mask, position_ids=position_ids[:, shared:],
                past_key_values=cache, use_cache=True, logits_to_keep=m + 1)
    if targets is not None:
        logits = out.logits[:, :m].float()  # the last prompt position and targets 0..m-2 predict targets 0..m-1
        acc.loss_sum += float(torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"))
        acc.tokens += int((labels != -100).sum())
    cache = out.past_key_values
    if targets is not None:
        cache.crop(-(m + 1))  # drop the targets and the last prompt position
    return cache
