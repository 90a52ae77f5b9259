"""Log-probabilities of a prompt's own tokens: `/v1/completions` with `echo` and `logprobs`, the
request lm-evaluation-harness sends for its loglikelihood (multiple-choice) tasks, as it sends it
to vLLM (`max_tokens` 1, `logprobs` 1, `echo`, token-id prompts).

One forward pass per prompt, alone (no padding, no other request in its batch: its figures do not
depend on what else the server is doing), at the run's evaluation precision, on the model the
run's evaluation used (the base, the adapter active, or the full fine-tuned weights). A prompt
-learning adapter's virtual tokens come first in the model's output and are left out. The answer
is OpenAI's legacy `logprobs` object: per token its text, its log-probability given the tokens
before it (none for the first) and the `top` most likely tokens there; with `extra` 1 the most
likely next token is appended, as a completion of one token.
"""

from __future__ import annotations

from typing import Any

import torch

from peftlab.device import autocast

MAX_TOP = 20  # most likely tokens a position can list (OpenAI's legacy API: 5; vLLM: 20)


def _top(tok: Any, lp: torch.Tensor, n: int) -> dict[str, float]:
    values, ids = lp.topk(max(n, 0))
    out: dict[str, float] = {}
    for v, i in zip(values.tolist(), ids.tolist(), strict=True):
        out.setdefault(tok.decode([i]), v)  # two tokens with the same text: the likelier one stays
    return out


@torch.no_grad()
def score(model: Any, tok: Any, ids: list[int], *, top: int, extra: int, precision: str) -> tuple[dict[str, Any], int | None]:
    """(the `logprobs` object for `ids` plus `extra` (0 or 1) greedy tokens, the greedy token or None)."""
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    with autocast(precision):
        logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits
    lp = torch.log_softmax(logits[0, -len(ids):].float(), dim=-1)  # virtual tokens' positions left out
    tokens, token_lps, tops = list(ids), [None], [None]
    for i in range(1, len(ids)):
        token_lps.append(lp[i - 1, ids[i]].item())
        tops.append(_top(tok, lp[i - 1], top))
    nxt = None
    if extra:
        nxt = int(lp[-1].argmax())
        tokens.append(nxt)
        token_lps.append(lp[-1, nxt].item())
        tops.append(_top(tok, lp[-1], top))
    texts = [tok.decode([t]) for t in tokens]
    offsets, at = [], 0
    for t in texts:
        offsets.append(at)
        at += len(t)
    return {"tokens": texts, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}, nxt


def answer(model: Any, tok: Any, jobs: list[Any], precision: str) -> None:
    """Each scoring job's answer (`engine.Job`: `ids`, `score`, `extra`, `echo`, `prompt_tokens`)."""
    for j in jobs:
        lp, nxt = score(model, tok, j.ids, top=j.score, extra=j.extra, precision=precision)
        if not j.echo:  # OpenAI: without echo, the completion's tokens only
            lp = {k: v[len(j.ids):] for k, v in lp.items()}
            lp["text_offset"] = [o - lp["text_offset"][0] for o in lp["text_offset"]]
        j.answer = {"text": tok.decode([nxt]) if nxt is not None else "", "finish_reason": "length",
                    "prompt_tokens": j.prompt_tokens, "completion_tokens": j.extra, "logprobs": lp}


def check(task: str, context: int | None, used: int, max_tokens: int | None, echo: bool) -> None:
    """A scoring request this run can answer, or the ServeError that says why not."""
    from peftlab.infer.errors import ServeError
    from peftlab.tasks.spec import spec

    if not spec(task).decoder_only:
        raise ServeError(f"logprobs and echo are for causal language model runs; this run is {task}",
                         param="logprobs")
    if max_tokens not in (0, 1):
        raise ServeError("with logprobs, this server scores the prompt's tokens and adds at most one: set "
                         "max_tokens to 0 or 1 (as lm-evaluation-harness does), or leave logprobs out to "
                         "generate longer answers", param="max_tokens")
    if not echo and max_tokens == 0:
        raise ServeError("max_tokens 0 without echo asks for nothing: send echo: true to score the prompt",
                         param="echo")
    if context is not None and used + max_tokens > context:
        raise ServeError(f"This model's maximum context length is {context} tokens; your prompt takes {used}",
                         param="prompt", code="context_length_exceeded")
