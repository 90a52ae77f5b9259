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
) -> list[tuple[str, bool]]:
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[tuple[str, bool] | None] = [None] * len(prompts)
    pad = tok.pad_token_id
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bs = ecfg.batch_size
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
                out = model.generate(
                    input_ids=ids.to(dev),
                    attention_mask=mask.to(dev),
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
    return [r for r in results if r is not None]
