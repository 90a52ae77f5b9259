"""The serving engine behind the OpenAI-compatible endpoint: any finished run of the store, by
the name `EXPERIMENT/RUN`, answering completions, with the requests of one base model batched.

The models are the playground's (`ModelPool`: one copy of each base, adapters and their heads
switched on it, full fine-tuned runs on their own weights under the memory limit), so an answer
is what the run's test evaluation would give: the prompt is formatted as in training
(`infer.prompts`), a greedy completion uses the run's decoding settings (`infer.decode`), a
classifier answers with its label through the task's own `predict`.

Requests are queued; one thread takes the oldest request's base model and every request for it
then waiting (up to `max_batch`), and answers them in as few batches as peft allows:
- rows of the zero-shot run and of plain LoRA adapters share one batch, each row with its own
  adapter (peft's `adapter_names`; `pool.mixable` says which tuners support it in peft 0.21);
- rows of every other run are batched per run (one adapter active for the batch).
Requests arriving while a batch runs wait for the next; `batching=False` answers one request
at a time (the load test's baseline).

Under load: at most `max_queued` requests wait (beyond, `submit` refuses with 429 and a
Retry-After estimated from the last batches); `cancel` takes a request whose client went away
(or whose time ran out) out of the queue, or stops its row at the next token, so its batch
ends as soon as its other rows do; `close` refuses what waits, stops the running batch and
waits for the thread. `threads`: torch's threads for the batching thread (None: torch's default).
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peftlab.infer.decode import Row, decode
from peftlab.infer.errors import ServeError
from peftlab.infer.pool import ModelPool, adapter_config, mixable
from peftlab.methods import get_method
from peftlab.store import Run, Store
from peftlab.tasks.base import Task
from peftlab.tasks.spec import spec

DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_QUEUED = 64  # waiting requests; one batch more runs (issue #30: no refusal at 64 clients)


def shutting_down() -> ServeError:
    return ServeError("the service is shutting down: retry on another server or later", 503, type="server_error",
                      code="shutting_down")


@dataclass
class Runnable:
    """What the engine knows about a run without loading its model."""

    run: Run
    cfg: Any  # ExperimentConfig
    task: Task
    context: int | None  # positions the model takes (virtual tokens included); None: no limit known
    virtual: int  # positions its virtual tokens take
    key: tuple  # its model's slot in the pool
    mix: bool  # may share a batch with other adapters of its base


@dataclass
class Job:
    r: Runnable
    prompt_tokens: int
    row: Row | None = None  # a completion; None: a classification of `text`, or a scoring
    text: str = ""
    ids: list[int] = field(default_factory=list)  # a scoring's tokens (`infer.score`)
    score: int | None = None  # a scoring: the likeliest tokens to list per position
    extra: int = 0  # a scoring: greedy tokens to add (0 or 1)
    echo: str | None = None  # the prompt's text, to put before the answer
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None


class Engine:
    def __init__(self, store: Store, pool: ModelPool, *, batching: bool = True,
                 max_batch: int = DEFAULT_MAX_BATCH, max_queued: int = DEFAULT_MAX_QUEUED,
                 threads: int | None = None) -> None:
        self.store, self.pool = store, pool
        self.batching, self.max_batch = batching, max(1, max_batch)
        self.max_queued, self.threads = max(1, max_queued), threads
        self.cond = threading.Condition()
        self.pending: list[Job] = []
        self.running: list[Job] = []
        self.seconds: list[float] = []  # durations of the last rounds (Retry-After)
        self.counts = {"refused": 0, "cancelled": 0}
        self.closed = False
        self.thread: threading.Thread | None = None
        self._known: dict[int, Runnable] = {}
        self._toks: dict[tuple, Any] = {}
        self.batches: list[tuple[int, int]] = []  # (rows, distinct runs) of the last batches, for tests
        self.rows: list[list] = []  # [tokens generated, client gone] of the last rows
        self.lock = threading.Lock()

    # -- what can be served ------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """Every finished run of the store with text input, as OpenAI's model objects."""
        return [_model_object(r) for r in self.store.runs() if _servable(r)]

    def runnable(self, model: str) -> Runnable:
        exp, _, name = model.partition("/")
        run = self.store.find_run(exp, name) if exp and name else None
        if run is None or not _servable(run):
            ids = [m["id"] for m in self.models()]
            raise ServeError(f"The model {model!r} does not exist here. Available models: {', '.join(ids) or 'none'}",
                             404, "model", "model_not_found")
        with self.lock:
            known = self._known.get(run.id)
            if known is None or known.run.finished_at != run.finished_at:
                known = self._known[run.id] = self._describe(run)
        return known

    def _describe(self, run: Run) -> Runnable:
        from peftlab.models import load_tokenizer, resolve_model
        from peftlab.models.trained import answer_precision, run_config
        from peftlab.tasks.build import build_task

        cfg, _, base = run_config(run)
        rm = resolve_model(cfg.model, base)
        tkey = (cfg.model.model_dump_json(), str(base), cfg.task)
        if tkey not in self._toks:
            self._toks[tkey] = load_tokenizer(rm, cfg.model, cfg.task)
        tok = self._toks[tkey]
        task = build_task(cfg, tok, None, (run.info or {}).get("labels"), answer_precision(run))
        virtual = 0
        if get_method(run.method).virtual_tokens and spec(cfg.task).decoder_only:
            virtual = int(adapter_config(run).get("num_virtual_tokens") or 0)
        return Runnable(run, cfg, task, _context(rm.path, cfg, tok), virtual, self.pool.key(run), mixable(run))

    # -- requests ---------------------------------------------------------------
    def prepare(self, model: str, *, messages: list[dict[str, Any]] | None = None, prompt: str | None = None,
                source: str | None = None, max_tokens: int | None = None, temperature: float = 1.0, top_p: float = 1.0,
                stop: list[str] | None = None, seed: int | None = None,
                on_text: Callable[[str], None] | None = None, prompt_ids: list[int] | None = None,
                logprobs: int | None = None, echo: bool = False) -> Job:
        """A request checked and tokenized, ready to `submit` (ServeError: why not). `source`: an
        input already through the experiment's template (the playground's), instead of `prompt`;
        `prompt_ids`: the model's own tokens, taken as they are (no template). `logprobs` (or `echo`
        with `max_tokens` 0): a scoring of the prompt's tokens (`infer.score`), not a generation."""
        from peftlab.infer.prompts import PromptError, chat_prompt, completion_prompt, raw_ids, source_prompt

        r = self.runnable(model)
        try:
            if prompt_ids is not None:
                ids, text = raw_ids(r.task, r.cfg, prompt_ids)
            elif messages is not None:
                ids, text = chat_prompt(r.task, r.cfg, messages)
            elif source is not None:
                ids, text = source_prompt(r.task, r.cfg, source)
            else:
                ids, text = completion_prompt(r.task, r.cfg, prompt or "")
        except PromptError as e:
            raise ServeError(str(e), param=e.param) from None
        used = len(ids) + r.virtual
        field_name = "messages" if messages is not None else "prompt"
        if r.context is not None and used >= r.context:
            raise ServeError(f"This model's maximum context length is {r.context} tokens; your {field_name} "
                             f"{'take' if messages is not None else 'takes'} {used}, leaving no room for a completion",
                             param=field_name, code="context_length_exceeded")
        if not spec(r.cfg.task).generative:
            return Job(r, len(ids), text=text)
        if logprobs is not None or (echo and max_tokens == 0):
            from peftlab.infer.score import check

            check(r.cfg.task, r.context, used, max_tokens, echo)
            return Job(r, len(ids), ids=ids, score=logprobs or 0, extra=max_tokens or 0, echo=text if echo else None)
        if max_tokens == 0:
            raise ServeError("max_tokens 0 asks for no completion: send echo: true (the prompt back, with logprobs "
                             "for its tokens) or a max_tokens of 1 or more", param="max_tokens")
        room = r.context - used if r.context is not None and spec(r.cfg.task).decoder_only else None
        if max_tokens is None:
            max_tokens = min(r.cfg.evaluation.max_new_tokens, room) if room is not None else \
                r.cfg.evaluation.max_new_tokens
        elif room is not None and max_tokens > room:
            raise ServeError(f"This model's maximum context length is {r.context} tokens. However, you requested "
                             f"{used + max_tokens} tokens ({used} in the {field_name}, {max_tokens} in the completion)",
                             param="max_tokens", code="context_length_exceeded")
        job = Job(r, len(ids), echo=text if echo else None)
        job.row = Row(ids, max_tokens, temperature, top_p, tuple(stop or ()), seed, on_text, job.cancelled.is_set)
        return job

    def full(self) -> ServeError | None:
        """The refusal a request gets now: the service is closing, or the queue is full (429 with
        Retry-After: the rounds the waiting requests need, at the last rounds' pace); None: room."""
        with self.cond:  # a reentrant lock: submit calls it holding the lock
            waiting = len(self.pending)
            if self.closed:
                return shutting_down()
            if waiting < self.max_queued:
                return None
            per_round = sum(self.seconds) / len(self.seconds) if self.seconds else 1.0
            wait = max(1, math.ceil(per_round * (waiting / (self.max_batch if self.batching else 1) + 1)))
        return ServeError(f"The server is busy: {waiting} requests are waiting (--max-queued {self.max_queued}). "
                          f"Retry after {wait} s", 429, type="requests", code="rate_limit_exceeded",
                          headers={"Retry-After": str(wait)})

    def check_room(self) -> None:
        """Raise `full()`'s refusal, if any (counted)."""
        with self.cond:
            refusal = self.full()
            if refusal is not None:
                self.counts["refused"] += 1
                raise refusal

    def submit(self, job: Job) -> concurrent.futures.Future:
        with self.cond:
            self.check_room()
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="peftlab-batcher", daemon=True)
                self.thread.start()
            self.pending.append(job)
            self.cond.notify()
        return job.future

    def cancel(self, job: Job) -> None:
        """The client went away or its time ran out: out of the queue, or its row stops at the next
        token (no effect once answered)."""
        job.cancelled.set()
        with self.cond:
            if job in self.pending:
                self.pending.remove(job)
                job.future.cancel()
                self.counts["cancelled"] += 1
            elif job in self.running and job.answer is None:
                self.counts["cancelled"] += 1

    def close(self, timeout: float = 5.0) -> None:
        """Refuse what waits and what runs (503; the running batch stops at its next token), and
        wait for the thread up to `timeout` seconds."""
        with self.cond:
            self.closed = True
            for j in [*self.pending, *self.running]:
                j.cancelled.set()
                _settle(j.future, error=shutting_down())
            self.pending.clear()
            self.cond.notify_all()
            thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the batching thread ----------------------------------------------------------
    def _loop(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)  # this thread's own (OpenMP's setting is per thread)
        while True:
            with self.cond:
                while not self.pending and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                key = self.pending[0].r.key
                take = [j for j in self.pending if j.r.key == key][: self.max_batch if self.batching else 1]
                self.pending = [j for j in self.pending if j not in take]
                live = self.running = [j for j in take if not j.cancelled.is_set()]
            for j in take:
                if j not in live:
                    j.future.cancel()  # the client went away while it waited
            if live:
                t0 = time.perf_counter()
                self._round(live)
                with self.cond:
                    self.running = []
                    self.seconds = [*self.seconds[-9:], time.perf_counter() - t0]

    def _round(self, jobs: list[Job]) -> None:
        try:
            with self.pool.use(jobs[0].r.run) as slot:
                for group in self._groups(jobs):
                    try:
                        self._answer(slot, group)
                    except Exception as e:  # noqa: BLE001 - a failed batch fails its requests, not the thread
                        for j in group:
                            _settle(j.future, error=e)
        except Exception as e:  # noqa: BLE001 - the model could not load
            for j in jobs:
                _settle(j.future, error=e)

    def _groups(self, jobs: list[Job]) -> list[list[Job]]:
        """Batches: mixable generation rows of the same decoding settings together (when more than
        one run is among them), every other run's rows per run."""
        groups: dict[tuple, list[Job]] = {}
        for j in jobs:
            ev = j.r.cfg.evaluation
            settings = ("score" if j.score is not None else j.row is None, ev.repetition_penalty,
                        ev.no_repeat_ngram_size)
            groups.setdefault((*settings, "mix") if j.row is not None and j.r.mix else (*settings, j.r.run.id),
                              []).append(j)
        return list(groups.values())

    def _answer(self, slot: Any, group: list[Job]) -> None:
        first = group[0].r
        t0 = time.perf_counter()
        if group[0].score is not None:  # scorings: one prompt at a time, alone (infer.score)
            from peftlab.infer.score import answer

            with self.pool.model_for(slot, first.run) as model:
                answer(model, slot.tok, group, first.task.precision)
        elif group[0].row is None:  # classification: the task's own predict, as its evaluation
            from peftlab.infer.loading import example

            with self.pool.model_for(slot, first.run) as model:
                preds = first.task.predict(model, [example(j.text) for j in group], desc="serve")
            for j, p in zip(group, preds, strict=True):
                j.answer = {"text": p.output, "finish_reason": "stop", "prompt_tokens": j.prompt_tokens,
                            "completion_tokens": 1, "confidence": p.extra.get("confidence")}
        else:
            from peftlab.tasks.causal_lm import stop_ids

            ev = first.cfg.evaluation
            decoder_only = spec(first.cfg.task).decoder_only
            stops = stop_ids(slot.tok) if decoder_only else [slot.tok.eos_token_id]
            rows = [j.row for j in group]
            kw = {"decoder_only": decoder_only, "repetition_penalty": ev.repetition_penalty,
                  "no_repeat_ngram_size": ev.no_repeat_ngram_size, "precision": first.task.precision}
            runs = {j.r.run.id for j in group}
            if len(runs) > 1:  # mixable rows of several runs: peft's adapter per row
                with self.pool.mixed(slot, [j.r.run for j in group]) as (model, names):
                    decode(model, slot.tok, rows, stops, adapter_names=names, **kw)
            else:
                with self.pool.model_for(slot, first.run) as model:
                    decode(model, slot.tok, rows, stops, **kw)
            for j in group:
                j.answer = {"text": j.row.text, "finish_reason": j.row.finish_reason, "prompt_tokens": j.prompt_tokens,
                            "completion_tokens": j.row.generated}
        self.batches = [*self.batches[-99:], (len(group), len({j.r.run.id for j in group}))]
        # tokens each row generated, and whether its client had gone (it stopped early)
        self.rows = [*self.rows[-9:], *([j.answer["completion_tokens"], j.cancelled.is_set()] for j in group)][-10:]
        for j in group:
            j.answer["seconds"] = round(time.perf_counter() - t0, 3)
            _settle(j.future, j.answer)

    def status(self) -> dict[str, Any]:
        with self.cond:
            waiting, running = len(self.pending), len(self.running)
        return {"batching": self.batching, "max_batch": self.max_batch, "max_queued": self.max_queued,
                "threads": self.threads, "waiting": waiting, "running": running, **self.counts,
                "last_batches": self.batches[-10:], "last_rows": self.rows, **self.pool.status()}


def _servable(r: Run) -> bool:
    from peftlab.infer.playground import Playground

    task = (r.config.get("experiment") or {}).get("task")
    return r.status == "done" and task is not None and not spec(task).image_input and Playground.usable(r)[0]


def _model_object(r: Run) -> dict[str, Any]:
    """OpenAI's model object; `parent`: the base model as the experiment names it."""
    cfg = r.config.get("experiment") or {}
    base = (cfg.get("model") or {}).get("path")
    return {"id": f"{r.experiment}/{r.name}", "object": "model", "created": int(r.finished_at or r.created_at),
            "owned_by": "peftlab", "parent": base, "root": base,
            "peftlab": {"experiment": r.experiment, "run": r.name, "method": r.method, "task": cfg.get("task")}}


def _settle(future: concurrent.futures.Future, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a request's future unless its client already cancelled it."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def _context(path: str, cfg: Any, tok: Any) -> int | None:
    """Positions the model takes: its config's, else its tokenizer's, else None (no known limit)."""
    from transformers import AutoConfig

    try:
        mc = AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError):
        mc = None
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        n = getattr(mc, name, None)
        if isinstance(n, int) and n > 0:
            return n
    n = getattr(tok, "model_max_length", None)
    return n if isinstance(n, int) and 0 < n < 1_000_000 else None
