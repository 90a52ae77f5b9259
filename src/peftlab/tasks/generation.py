"""Batched greedy/beam generation: left padding, KV cache, batches sorted by length.

Sorting by prompt length keeps padding small; `generate` stops a batch as soon as every
sequence has produced a stop token. We record whether each output stopped on its own
(learned EOS) or ran into max_new_tokens.

Prompts that share a beginning (the chat template's system turn and the instruction come
before every input) have that prefix computed once per batch, at batch size 1, and its KV
cache repeated over the rows: each batch then computes only the differing suffixes, laid out
as [shared prefix | left padding | suffix] with the padding masked.

Prompt-learning adapters (prefix-tuning, prompt-tuning, p-tuning) change nothing but what
comes before the prompt: their virtual tokens are turned into the head of that same cache
(their keys and values, or the base model's cache over their embeddings), and the base model
generates on from it. Those methods then get the shared prefix and the one-pass test loss too.

`_Path` decides once per call which of these ways the batches go; `_generate_batch` is one
batch. A new way to decode goes there; a task's use of the outputs goes in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria

from peftlab.compat import cache_kw, cache_of
from peftlab.config.schema import EvaluationConfig
from peftlab.device import autocast

MIN_SHARED_PREFIX = 8  # tokens: below this, a separate prefix pass is not worth its call
# Decoder-only greedy: a `generate` call ends once 1/PRUNE_AT of its rows have stopped, and the
# rest go on without them (0: one call per batch, finished rows decoded as padding to the end).
PRUNE_AT = 4


@dataclass
class GenerationResult:
    """What `generate_batched` returns: (text, stopped) per prompt in the input order and, when
    it scored `targets`, their summed loss and token count."""

    outputs: list[tuple[str, bool]]
    loss_sum: float = 0.0
    tokens: int = 0

    @property
    def mean_loss(self) -> float:
        """The targets' mean loss per token (NaN when none were scored)."""
        return self.loss_sum / self.tokens if self.tokens else float("nan")


@dataclass(frozen=True)
class _Decoding:
    """The decoding settings every batch shares: the evaluation config's, the stop tokens, the
    padding id."""

    stop: list[int]
    pad: int
    max_new_tokens: int
    num_beams: int
    repetition_penalty: float
    no_repeat_ngram_size: int

    @classmethod
    def of(cls, ecfg: EvaluationConfig, stop: list[int], pad: int) -> _Decoding:
        return cls(stop, pad, ecfg.max_new_tokens, ecfg.num_beams, ecfg.repetition_penalty,
                   ecfg.no_repeat_ngram_size)

    def generate_kw(self) -> dict[str, Any]:
        """`generate` arguments, but for the inputs, cache and length."""
        return {"do_sample": False, "num_beams": self.num_beams, "eos_token_id": self.stop, "pad_token_id": self.pad,
                "repetition_penalty": self.repetition_penalty, "no_repeat_ngram_size": self.no_repeat_ngram_size}

    def text(self, tok: Any, new: list[int]) -> tuple[str, bool]:
        """A row's new tokens as (text up to the first stop token, whether it stopped)."""
        cut = next((k for k, t in enumerate(new) if t in self.stop), None)
        stopped = cut is not None
        return tok.decode(new[:cut] if stopped else new, skip_special_tokens=True).strip(), stopped


@dataclass(frozen=True)
class _Path:
    """How `generate_batched` runs its batches, decided once per call from the model and settings:
    - encoder-decoder, or beam search: plain `generate` on the padded prompts (`greedy` False);
    - decoder-only greedy: our own prefill (`_prefill`: the batch's shared prefix once, targets
      scored in the prompt pass) whenever there is one to do, then `_decode_pruning`;
    - and with a prompt-learning adapter, its virtual tokens as the head of the cache (`head`),
      `generate` running on the base model (`gen`)."""

    decoder_only: bool
    greedy: bool  # decoder-only, one beam
    share_prefix: bool
    head: _VirtualHead | None
    gen: Any  # the model `generate` runs on
    device: torch.device

    @classmethod
    def of(cls, model: Any, decoder_only: bool, num_beams: int, share_prefix: bool) -> _Path:
        greedy = decoder_only and num_beams == 1
        share_prefix = share_prefix and greedy and one_pass_ok(model)
        head = _VirtualHead(model) if share_prefix and has_virtual_tokens(model) else None
        gen = model.get_base_model() if head else model  # the virtual tokens live in the cache
        return cls(decoder_only, greedy, share_prefix, head, gen, next(model.parameters()).device)

    @property
    def virtual(self) -> int:
        """Positions the virtual tokens take at the head of the cache (0: none)."""
        return self.head.length if self.head else 0


def generate_batched(
    model: Any,
    tok: Any,
    prompts: list[list[int]],
    ecfg: EvaluationConfig,
    stop: list[int],
    *,
    decoder_only: bool = True,
    desc: str = "generate",
    precision: str = "fp32",
    targets: list[list[int]] | None = None,
    share_prefix: bool = True,
) -> GenerationResult:
    """Greedy/beam outputs for `prompts`, as (text, stopped) in the input order.

    With `targets` (decoder-only, greedy), each batch's prompt forward pass also scores the
    reference completions: one pass over [left-padded prompt | target] gives the targets'
    loss, its cache cropped to the prompt seeds `generate`, so the test loss costs no second
    pass over the prompts. The summed loss and token count come back in the result.

    `share_prefix` (decoder-only, greedy) computes the prompts' common beginning once per
    batch; False gives plain `generate` prefill (tests compare the two). Prompt-learning
    adapters go through their virtual-token cache under the same conditions (see the module).
    """
    dec = _Decoding.of(ecfg, stop, tok.pad_token_id)
    path = _Path.of(model, decoder_only, ecfg.num_beams, share_prefix)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[tuple[str, bool]] = [("", False)] * len(prompts)
    result = GenerationResult(outputs)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(precision):
            for start in tqdm(range(0, len(order), ecfg.batch_size), desc=desc, unit="batch", leave=False):
                idx = order[start : start + ecfg.batch_size]
                tgts = [targets[i] for i in idx] if targets is not None else None
                new_rows, loss_sum, tokens = _generate_batch(path, dec, [prompts[i] for i in idx], tgts)
                result.loss_sum += loss_sum
                result.tokens += tokens
                for i, new in zip(idx, new_rows, strict=True):
                    outputs[i] = dec.text(tok, new)
    finally:
        model.train(was_training)
    return result


def _generate_batch(path: _Path, dec: _Decoding, rows: list[list[int]], targets: list[list[int]] | None
                    ) -> tuple[list[list[int]], float, int]:
    """One batch: the new tokens of each row, and the summed loss and count of the `targets`
    scored on the way (0.0, 0 without)."""
    gen, v = path.gen, path.virtual
    shared = _shared_prefix(rows) if path.share_prefix else 0
    ids, mask = _pad_batch(rows, shared, dec.pad, path.decoder_only)
    ids, mask = ids.to(path.device), mask.to(path.device)
    n = ids.shape[1]
    cache, loss_sum, tokens = None, 0.0, 0
    if targets is not None or shared or path.head:  # targets: the caller checked one_pass_ok
        cache, loss_sum, tokens = _prefill(gen, ids, mask, shared, targets, dec.pad, path.head)
    if v:  # stand-ins for the virtual positions, which the cache already covers: each row's
        # first real token, so repetition guards see no token the prompt lacks
        first = ids.gather(1, mask.argmax(1, keepdim=True))
        ids = torch.cat([first.expand(-1, v), ids], dim=1)
        mask = torch.cat([mask.new_ones(mask.shape[0], v), mask], dim=1)
    if path.greedy and PRUNE_AT:
        return _decode_pruning(gen, ids, mask, cache, dec), loss_sum, tokens
    out = gen.generate(input_ids=ids, attention_mask=mask, **cache_kw(cache), max_new_tokens=dec.max_new_tokens,
                       **dec.generate_kw())
    return (out[:, v + n :] if path.decoder_only else out[:, 1:]).tolist(), loss_sum, tokens


def _decode_pruning(gen: Any, ids: torch.Tensor, mask: torch.Tensor, cache: Any, dec: _Decoding) -> list[list[int]]:
    """Greedy decoding that drops rows once they have stopped; the new tokens of each row.

    `generate` decodes every row of a batch until the last one stops, the finished ones as
    padding; on statista the batches did about twice the row-steps their outputs needed, and
    on a CPU every row costs. Here each call ends once a share of its rows has stopped
    (`_RowsStopped`); the rows still going continue from the same cache, minus the finished
    rows, in the next call. Greedy outputs are those of one call.
    """
    b = ids.shape[0]
    new: list[list[int]] = [[] for _ in range(b)]
    active = list(range(b))
    budget = dec.max_new_tokens
    stops = set(dec.stop)
    kw = dec.generate_kw()
    while True:
        rows_stopped = _RowsStopped(dec.stop, max(1, len(active) // PRUNE_AT))
        out = gen.generate(input_ids=ids, attention_mask=mask, **cache_kw(cache), max_new_tokens=budget,
                           stopping_criteria=[rows_stopped], return_dict_in_generate=True, **kw)
        k = out.sequences.shape[1] - ids.shape[1]
        budget -= k
        keep = []
        for r, toks in enumerate(out.sequences[:, ids.shape[1] :].tolist()):
            new[active[r]].extend(toks)
            if not stops.intersection(toks):
                keep.append(r)
        if budget <= 0 or not keep:
            return new
        sel = torch.tensor(keep, device=ids.device)
        cache = cache_of(out)  # ends one position short: the next call feeds the last token
        if cache is not None:  # (a model without one has generate prefill the rows again)
            cache.batch_select_indices(sel)
        ids = out.sequences.index_select(0, sel)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], k)], dim=1).index_select(0, sel)
        active = [active[r] for r in keep]


class _RowsStopped(StoppingCriteria):
    """Stopping criterion: ends the `generate` call (every row) once `need` of its rows have
    produced a stop token. Its per-step read-back to the host matches the one generate already
    does for its own stop check."""

    def __init__(self, stop: list[int], need: int) -> None:
        self.stop = torch.tensor(stop)
        self.need = need
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        hit = torch.isin(input_ids[:, -1], self.stop.to(input_ids.device))
        self.done = hit if self.done is None else self.done | hit
        return torch.full_like(hit, bool(self.done.sum() >= self.need))


def has_virtual_tokens(model: Any) -> bool:
    """Prompt-learning adapters (prefix/prompt/p-tuning) prepend virtual tokens."""
    cfg = getattr(model, "active_peft_config", None)
    return bool(getattr(cfg, "is_prompt_learning", False))


# peft.PeftType values (a str enum) whose virtual tokens `_VirtualHead` turns into the head of a cache:
# keys and values (get_prompt is a cache), or embeddings prepended to the input.
_KV_TYPES = ("PREFIX_TUNING", "CARTRIDGE")
_EMBEDDING_TYPES = ("PROMPT_TUNING", "P_TUNING", "CPT")


def virtual_cache_ok(model: Any) -> bool:
    """Whether the adapter's virtual tokens can become the head of a plain cache (`_VirtualHead`):
    prefix-tuning and cartridges (their keys and values are a cache), prompt-tuning, p-tuning and
    CPT (embeddings; CPT's own loss needs labels, and peftlab computes the loss outside the model)."""
    cfg = model.active_peft_config
    return cfg.num_transformer_submodules == 1 and cfg.peft_type in _KV_TYPES + _EMBEDDING_TYPES


def one_pass_ok(model: Any) -> bool:
    """Whether `generate_batched` can score targets in its prompt pass (greedy decoding assumed)."""
    return not has_virtual_tokens(model) or virtual_cache_ok(model)


class _VirtualHead:
    """A prompt-learning adapter's virtual tokens, as the first `length` positions of a cache."""

    def __init__(self, model: Any) -> None:  # the PeftModel
        self.model = model
        self.length = model.active_peft_config.num_virtual_tokens
        self.is_kv = model.active_peft_config.peft_type in _KV_TYPES  # else embeddings

    def cache(self, base: Any, prefix: torch.Tensor) -> Any:
        """Cache of [virtual tokens | `prefix` (1 x k ids)] at batch size 1. Positions run on
        from the virtual tokens, as in training (peft counts them)."""
        k = prefix.shape[1]
        prompt = self.model.get_prompt(batch_size=1)
        if self.is_kv:
            if k:
                pos = torch.arange(self.length, self.length + k, device=prefix.device)[None]
                base(input_ids=prefix, attention_mask=prefix.new_ones(1, self.length + k),
                     position_ids=pos, **cache_kw(prompt), use_cache=True, logits_to_keep=1)
            return prompt
        emb = base.get_input_embeddings()(prefix)
        x = torch.cat([prompt.to(emb.dtype), emb], dim=1)
        return cache_of(base(inputs_embeds=x, use_cache=True, logits_to_keep=1))


def virtual_prefill(model: Any, ids: torch.Tensor, mask: torch.Tensor, pad: int) -> tuple[Any, Any, torch.Tensor,
                                                                                      torch.Tensor]:
    """For a caller that runs `generate` itself (serving: `peftlab.infer.decode`), a prompt-learning
    adapter's virtual tokens as the head of the batch's cache, as `generate_batched` decodes them.
    `ids`, `mask`: left-padded prompts. Returns (the model to generate with, the cache, the ids and
    mask to give it); other models come back as they are, with no cache."""
    if not (has_virtual_tokens(model) and virtual_cache_ok(model)):
        return model, None, ids, mask
    head = _VirtualHead(model)
    base = model.get_base_model()
    cache, _, _ = _prefill(base, ids, mask, 0, None, pad, head)
    v = head.length
    first = ids.gather(1, mask.argmax(1, keepdim=True))  # stand-ins for the virtual positions (_generate_batch)
    return base, cache, torch.cat([first.expand(-1, v), ids], dim=1), torch.cat([mask.new_ones(mask.shape[0], v), mask],
                                                                                dim=1)


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
    head: _VirtualHead | None = None,
) -> tuple[Any, float, int]:
    """The prompts' KV cache for `generate`, computed here rather than by `generate`, with the
    summed loss and token count of the `targets` (0.0, 0 without):
    - the virtual tokens (`head`) and the first `shared` positions once, at batch size 1, then
      repeated over the rows;
    - with `targets`, the rest of the prompt and the reference completions in one pass, whose
      loss comes back with the cache (the test loss costs no second pass over the prompts).
    The cache ends one position short of the prompt, so `generate` feeds the last prompt token
    itself and computes the first new token's logits exactly as without a cache.
    """
    cache = None
    v = head.length if head else 0
    if head is not None:
        cache = head.cache(model, ids[:1, :shared])
    elif shared:
        cache = cache_of(model(input_ids=ids[:1, :shared], use_cache=True, logits_to_keep=1))
    if cache is not None:
        cache.batch_repeat_interleave(ids.shape[0])
    mask = torch.cat([mask.new_ones(mask.shape[0], v), mask], dim=1)
    if targets is None:
        full_mask, rest = mask[:, :-1], ids[:, shared:-1]
        m = 0
        if rest.shape[1] == 0:
            return cache, 0.0, 0
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
    out = model(input_ids=rest, attention_mask=full_mask, position_ids=position_ids[:, v + shared :],
                **cache_kw(cache), use_cache=True, logits_to_keep=m + 1)
    cache = cache_of(out)
    if targets is None:
        return cache, 0.0, 0
    logits = out.logits[:, :m].float()  # the last prompt position and targets 0..m-2 predict targets 0..m-1
    loss_sum = float(torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"))
    cache.crop(-(m + 1))  # drop the targets and the last prompt position
    return cache, loss_sum, int((labels != -100).sum())
