"""Batched generation for serving: each row of a batch with its own sampling settings, length,
stop strings and a callback that streams its text as it grows.

`generate_batched` (peftlab.tasks.generation) is the evaluation's decoder: greedy or beam, one
length and one stop set per call, text at the end. A request to the OpenAI-compatible endpoint
needs per-row `temperature`, `top_p`, `max_tokens`, `stop` and streaming, and rows of several
requests share a batch. Built on the same `generate`, with the run's own decoding settings
(repetition penalty, n-gram blocking, stop tokens), so a greedy row equals the evaluation's output:
- `_Sampler`, a logits processor, draws each sampling row's token itself (temperature, top_p,
  its own generator: a request's `seed` makes it repeatable) and leaves only that token
  possible, so `generate` runs greedy for every row and greedy rows are untouched;
- `_Watch`, a stopping criterion, reads each step's new token per row: the row's stop tokens,
  stop strings and length end it (others go on), and its new text goes to its callback.
Prompt-learning adapters go as in evaluation: their virtual tokens head the cache and the base
model generates on (`generation.virtual_prefill`). Mixed-adapter batches (LoRA) pass peft's
`adapter_names`, one per row.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from peftlab.compat import cache_kw
from peftlab.device import autocast


@dataclass
class Row:
    """One completion: what to generate, and (filled in) what was generated."""

    prompt: list[int]
    max_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    on_text: Callable[[str], None] | None = None  # new text, as it becomes final
    cancelled: Callable[[], bool] | None = None  # the client went away: stop early
    tokens: list[int] = field(default_factory=list)  # generated, stop token excluded
    generated: int = 0  # tokens generated, a stop token included (usage)
    text: str = ""  # the final text so far (what was sent)
    finish_reason: str | None = None  # "stop" or "length"
    stop_token: int | None = None  # the stop token that ended it, if one did

    def _emit(self, upto: str) -> None:
        if len(upto) > len(self.text) and upto.startswith(self.text):
            new, self.text = upto[len(self.text):], upto
            if self.on_text is not None:
                self.on_text(new)

    def update(self, tok: Any, final: bool) -> None:
        """Advance `text` over the newly final part of the decoded tokens: a stop string ends the row
        there; text that could still turn into one, or an unfinished multi-byte character, waits."""
        full = tok.decode(self.tokens, skip_special_tokens=True).lstrip()  # as evaluation outputs start
        cuts = [i for i in (full.find(s) for s in self.stop) if i >= 0]
        if cuts:
            self._emit(full[: min(cuts)])
            self.finish_reason = "stop"
            return
        if not final:
            hold = max((len(s) - 1 for s in self.stop), default=0)
            end = len(full) - hold
            while end > 0 and full[end - 1] == "\ufffd":
                end -= 1
            full = full[: max(end, 0)]
        # Trailing whitespace waits for the text after it, and a finished row ends without it, as
        # an evaluation output does (`_Decoding.text` strips it): `max_tokens=1` on a space gives "".
        self._emit(full.rstrip())


class _Watch(StoppingCriteria):
    """Per step: each unfinished row's new token; returns which rows are done."""

    def __init__(self, rows: list[Row], tok: Any, stop_ids: list[int]) -> None:
        self.rows, self.tok, self.stop_ids = rows, tok, set(stop_ids)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        for row, t in zip(self.rows, last, strict=True):
            if row.finish_reason is not None:
                continue
            row.generated += 1
            if t in self.stop_ids:
                row.stop_token = t
                row.update(self.tok, final=True)
                row.finish_reason = "stop"
                continue
            row.tokens.append(t)
            row.update(self.tok, final=False)
            if row.finish_reason is None and (row.generated >= row.max_tokens
                                              or (row.cancelled is not None and row.cancelled())):
                row.update(self.tok, final=True)
                row.finish_reason = row.finish_reason or "length"
        return torch.tensor([r.finish_reason is not None for r in self.rows], device=input_ids.device)


class _Sampler(LogitsProcessor):
    """Samples the rows with a temperature (nucleus `top_p`), each from its own generator, and
    leaves the drawn token the only one possible; greedy rows pass unchanged."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.gens: list[torch.Generator | None] = [None] * len(rows)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for i, row in enumerate(self.rows):
            if row.temperature <= 0 or row.finish_reason is not None:
                continue
            if self.gens[i] is None:
                g = torch.Generator(device=scores.device)
                g.manual_seed(row.seed if row.seed is not None else secrets.randbits(63))
                self.gens[i] = g
            probs = (scores[i].float() / row.temperature).softmax(-1)
            if row.top_p < 1.0:
                p, idx = probs.sort(descending=True)
                drop = p.cumsum(-1) - p >= row.top_p  # keep the smallest head reaching top_p
                probs = probs.scatter(0, idx[drop], 0.0)
            k = int(torch.multinomial(probs, 1, generator=self.gens[i]))
            scores[i] = float("-inf")
            scores[i, k] = 0.0
        return scores


def decode(model: Any, tok: Any, rows: list[Row], stop_ids: list[int], *, decoder_only: bool = True,
           repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, precision: str = "fp32",
           adapter_names: list[str] | None = None) -> None:
    """Generate every row (results on the rows). `adapter_names`: peft's adapter per row, for a
    batch of several LoRA adapters on one base."""
    from peftlab.tasks.generation import virtual_prefill

    pad = tok.pad_token_id if tok.pad_token_id is not None else stop_ids[0]
    ids, mask = _pad(rows, pad, decoder_only)
    dev = next(model.parameters()).device
    ids, mask = ids.to(dev), mask.to(dev)
    kw: dict[str, Any] = {}
    gen = model
    if adapter_names is not None:
        kw["adapter_names"] = adapter_names
    elif decoder_only:
        gen, cache, ids, mask = virtual_prefill(model, ids, mask, pad)
        if cache is not None:
            kw.update(cache_kw(cache))
    sampler = [_Sampler(rows)] if any(r.temperature > 0 for r in rows) else []
    was = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            gen.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(r.max_tokens for r in rows),
                         do_sample=False, num_beams=1, eos_token_id=stop_ids, pad_token_id=pad,
                         repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                         logits_processor=LogitsProcessorList(sampler),
                         stopping_criteria=StoppingCriteriaList([_Watch(rows, tok, stop_ids)]), **kw)
    finally:
        model.train(was)
    for r in rows:  # a row the criteria did not see end (none expected)
        if r.finish_reason is None:
            r.update(tok, final=True)
            r.finish_reason = "length"


def _pad(rows: list[Row], pad: int, decoder_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder-only prompts padded on the left (generation continues on the right), encoder
    inputs on the right."""
    n = max(len(r.prompt) for r in rows)
    ids = torch.full((len(rows), n), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        k = len(r.prompt)
        sl = slice(n - k, n) if decoder_only else slice(0, k)
        ids[i, sl], mask[i, sl] = torch.tensor(r.prompt), 1
    return ids, mask
