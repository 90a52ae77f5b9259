"""An OpenAI-compatible API over the store's finished runs (HTTP only; the engine is
`peftlab.infer.engine.Engine`): `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

A run is the model `EXPERIMENT/RUN`. Supported: `messages` / `prompt`, `max_tokens`
(`max_completion_tokens`), `temperature`, `top_p`, `stop`, `seed`, `n=1`, `stream` (server-sent
events in OpenAI's chunk format, ending `data: [DONE]`; `stream_options.include_usage`); on
completions also prompts of token ids and several prompts (a choice each), `echo`, and `logprobs`
for the prompt's tokens and at most one more (`infer.score`: what lm-evaluation-harness's
`local-completions` model asks for its loglikelihood tasks). Other
OpenAI parameters are refused with a message rather than ignored. Errors come back in OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}` (`serve.v1_errors`); the service's token
applies as on /api (`Authorization: Bearer`, which is how OpenAI clients send their api key).

Under load: a full queue (`--max-queued`) answers 429 with Retry-After before the prompt is read;
a request past `--request-timeout` (counted from its arrival) is stopped with 504 (an error
event in a stream); a client that disconnects has its request taken out of the queue, or its row
stopped at the next token (a stream by Starlette's disconnect listener, a whole answer by
looking at the connection every DISCONNECT_POLL seconds while it waits).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from peftlab.errors import NotFound, PeftlabError
from peftlab.infer.engine import Engine, Job, ServeError
from peftlab.infer.score import MAX_TOP
from peftlab.serve.deps import EngineDep

router = APIRouter(tags=["openai"])
MAX_STOPS = 4
DISCONNECT_POLL = 0.25  # seconds between looks at whether a waiting client is still there
MAX_INT = 2**31 - 1  # token counts beyond any model's context (larger ones would overflow the engine's types)


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A finished run: EXPERIMENT/RUN (see /v1/models).")
    max_tokens: int | None = Field(None, ge=1, le=MAX_INT, description="Default: the run's evaluation max_new_tokens.")
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False,
                               description="0: greedy, the run's evaluation decoding.")
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    n: int = Field(1, ge=1, le=MAX_INT, description="Only 1.")
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1, description="Makes a sampled answer repeatable.")
    user: str | None = None
    presence_penalty: float = Field(0.0, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, allow_inf_nan=False)
    logit_bias: dict[str, float] | None = None


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    logprobs: bool | None = None


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text (through the experiment's template, as the run's inputs were), or the model's own "
                    "token ids (taken as they are); a list of several gives a choice per prompt.")
    max_tokens: int | None = Field(None, ge=0, le=MAX_INT, description="Default: the run's evaluation "
                                   "max_new_tokens; 0 with echo: the prompt only (scored with logprobs).")
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP, description="Log-probabilities of the prompt's tokens "
                                 "(with echo) and of at most one completion token, with this many likeliest tokens "
                                 "per position: lm-evaluation-harness's loglikelihood requests.")
    suffix: str | None = None


def _refuse_unsupported(req: ChatRequest | CompletionRequest) -> None:
    if req.n != 1:
        raise ServeError("n > 1 is not supported: each request returns one choice (send n requests instead)",
                         param="n")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise ServeError(f"{name} is not supported (the run decodes with its own repetition settings)", param=name)
    if req.logit_bias:
        raise ServeError("logit_bias is not supported", param="logit_bias")
    if isinstance(req, ChatRequest) and req.logprobs:
        raise ServeError("logprobs are not supported on chat completions: /v1/completions returns them for a "
                         "prompt's tokens", param="logprobs")
    if isinstance(req, CompletionRequest):
        if req.suffix:
            raise ServeError("suffix is not supported", param="suffix")
        if req.stream and (req.echo or req.logprobs is not None):
            raise ServeError("echo and logprobs come in whole answers: send stream: false", param="stream")
        if req.stream and len(_prompts(req)) > 1:
            raise ServeError("a stream answers one prompt: send one, or stream: false for several", param="prompt")
    stops = _stops(req)
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        raise ServeError(f"stop: up to {MAX_STOPS} non-empty strings", param="stop")


def _stops(req: ChatRequest | CompletionRequest) -> list[str]:
    return [req.stop] if isinstance(req.stop, str) else list(req.stop or [])


def _prompts(req: CompletionRequest) -> list[str | list[int]]:
    """The request's prompts: texts, or lists of token ids."""
    p = req.prompt
    if isinstance(p, str):
        return [p]
    if not p:
        raise ServeError("prompt is empty: send a text, a list of token ids, or a list of either", param="prompt")
    if all(isinstance(x, int) for x in p):
        return [list(p)]  # one prompt of token ids
    return list(p)


async def _prepare(engine: Engine, req: ChatRequest | CompletionRequest, on_text: Any = None) -> list[Job]:
    """A job per prompt (a chat request, or a stream: one)."""
    _refuse_unsupported(req)
    kw: dict[str, Any] = {"max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p,
                          "stop": _stops(req), "seed": req.seed, "on_text": on_text}
    if isinstance(req, ChatRequest):
        kw["messages"] = [m.model_dump() for m in req.messages]
        kw["max_tokens"] = req.max_completion_tokens or req.max_tokens
        return [await run_in_threadpool(engine.prepare, req.model, **kw)]
    kw.update(logprobs=req.logprobs, echo=req.echo)
    jobs = []
    for p in _prompts(req):
        which = {"prompt": p} if isinstance(p, str) else {"prompt_ids": p}
        jobs.append(await run_in_threadpool(engine.prepare, req.model, **kw, **which))
    return jobs


def _usage(a: dict[str, Any]) -> dict[str, int]:
    return {"prompt_tokens": a["prompt_tokens"], "completion_tokens": a["completion_tokens"],
            "total_tokens": a["prompt_tokens"] + a["completion_tokens"]}


def _choice(kind: Literal["chat", "text"], text: str | None, finish: str | None, final: bool = True,
            first: bool = False, index: int = 0, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    if kind == "text":
        return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
    if final:
        return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": finish}
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
    if text:
        delta["content"] = text
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


class _Gone(Exception):
    """The client closed its connection."""


def _timeout(seconds: float) -> ServeError:
    return ServeError(f"The request took longer than this server's limit of {seconds:g} s (--request-timeout) "
                      "and was stopped: ask for fewer max_tokens, or retry when the server is less busy",
                      504, type="server_error", code="timeout")


async def _complete(request: Request, engine: Engine, req: ChatRequest | CompletionRequest,
                    kind: Literal["chat", "text"]) -> Any:
    limit = request.app.state.settings.request_timeout
    deadline = time.monotonic() + limit if limit else None
    head = {"id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
            "model": req.model, "system_fingerprint": None}
    obj = "chat.completion" if kind == "chat" else "text_completion"
    engine.check_room()  # a full queue refuses before the prompt is read
    if req.stream:
        return await _stream(engine, req, kind, head, limit, deadline)
    jobs = await _prepare(engine, req)
    futures: list[asyncio.Future] = []
    try:
        futures = [asyncio.wrap_future(engine.submit(j)) for j in jobs]
        while not all(f.done() for f in futures):  # the answers, the client leaving, or the deadline: what comes first
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise _timeout(limit)
            await asyncio.wait(set(futures), timeout=DISCONNECT_POLL if left is None else min(DISCONNECT_POLL, left),
                               return_when=asyncio.ALL_COMPLETED)
            if not all(f.done() for f in futures) and await request.is_disconnected():
                raise _Gone
        if any(f.cancelled() for f in futures):
            raise ServeError("cancelled", 499)
        answers = [f.result() for f in futures]
    finally:
        for j in jobs:  # out of the queue, or its row stops at the next token (no effect once answered)
            engine.cancel(j)
    choices = [_choice(kind, (j.echo or "") + a["text"], a["finish_reason"], index=i, logprobs=a.get("logprobs"))
               for i, (j, a) in enumerate(zip(jobs, answers, strict=True))]
    usage = {k: sum(u[k] for u in map(_usage, answers)) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    body = {**head, "object": obj, "choices": choices, "usage": usage}
    if len(answers) == 1 and answers[0].get("confidence") is not None:
        body["peftlab"] = {"confidence": answers[0]["confidence"]}
    return body


async def _stream(engine: Engine, req: ChatRequest | CompletionRequest, kind: Literal["chat", "text"],
                  head: dict[str, Any], limit: float | None, deadline: float | None) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    (job,) = await _prepare(engine, req, on_text=lambda s: loop.call_soon_threadsafe(queue.put_nowait, ("text", s)))
    future = engine.submit(job)  # refusals above come back as plain errors, before the stream starts
    future.add_done_callback(lambda f: loop.call_soon_threadsafe(queue.put_nowait, ("done", f)))
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    usage = bool(req.stream_options and req.stream_options.include_usage)

    def sse(choices: list[dict[str, Any]], **extra: Any) -> str:
        return f"data: {json.dumps({**head, 'object': obj, 'choices': choices, **extra})}\n\n"

    async def events() -> AsyncIterator[str]:
        # A client that disconnects cancels this generator (Starlette listens for it): `finally`
        # then stops its row.
        try:
            if kind == "chat":
                yield sse([_choice(kind, None, None, final=False, first=True)])
            while True:
                try:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    what, value = await asyncio.wait_for(queue.get(), left)
                except asyncio.TimeoutError:
                    yield f"data: {json.dumps({'error': _error_body(_timeout(limit or 0))})}\n\n"
                    break
                if what == "text":
                    yield sse([_choice(kind, value, None, final=False)])
                    continue
                exc = None if value.cancelled() else value.exception()
                if value.cancelled() or exc is not None:
                    e = _as_serve_error(exc) if exc is not None else ServeError("cancelled", 499)
                    yield f"data: {json.dumps({'error': _error_body(e)})}\n\n"
                    break
                a = value.result()
                if job.row is None:  # a classifier's label comes whole
                    yield sse([_choice(kind, a["text"], None, final=False)])
                yield sse([_choice(kind, None, a["finish_reason"], final=False)])
                if usage:
                    yield sse([], usage=_usage(a))
                break
            yield "data: [DONE]\n\n"
        finally:
            engine.cancel(job)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _as_serve_error(e: BaseException) -> ServeError:
    if isinstance(e, ServeError):
        return e
    if isinstance(e, OverflowError):  # a number beyond what the engine takes
        return ServeError(f"A number in the request is out of range: {e}", 400)
    if isinstance(e, NotFound):
        return ServeError(str(e), 404, code="not_found")
    if isinstance(e, PeftlabError):
        return ServeError(str(e), 400)
    return ServeError(f"{type(e).__name__}: {e}", 500, type="server_error")


def _error_body(e: ServeError) -> dict[str, Any]:
    return {"message": str(e), "type": e.type, "param": e.param, "code": e.code}


async def _guarded(coro: Any) -> Any:
    try:
        return await coro
    except _Gone:  # nobody to answer (uvicorn drops what is sent)
        return Response(status_code=499)
    except Exception as e:  # noqa: BLE001 - every error in OpenAI's shape
        s = _as_serve_error(e)
        return JSONResponse({"error": _error_body(s)}, status_code=s.status, headers=s.headers)


@router.get("/v1/models")
async def list_models(engine: EngineDep) -> dict[str, Any]:
    return {"object": "list", "data": await run_in_threadpool(engine.models)}


@router.get("/v1/models/{model:path}")
async def get_model(model: str, engine: EngineDep) -> Any:
    async def find() -> dict[str, Any]:
        models = await run_in_threadpool(engine.models)
        for m in models:
            if m["id"] == model:
                return m
        raise ServeError(f"The model {model!r} does not exist here. Available models: "
                         f"{', '.join(m['id'] for m in models) or 'none'}", 404, "model", "model_not_found")

    return await _guarded(find())


@router.post("/v1/chat/completions")
async def chat_completions(req: ChatRequest, engine: EngineDep, request: Request) -> Any:
    return await _guarded(_complete(request, engine, req, "chat"))


@router.post("/v1/completions")
async def completions(req: CompletionRequest, engine: EngineDep, request: Request) -> Any:
    return await _guarded(_complete(request, engine, req, "text"))
