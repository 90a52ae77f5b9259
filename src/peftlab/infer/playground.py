"""The playground: one input, the outputs of several runs side by side, each exactly what that
run's own test evaluation answers for it (tests/test_playground_parity.py).

The models live in a `ModelPool` (`peftlab.infer.pool`, shared with the OpenAI-compatible
endpoint): one copy of each base model, adapters loaded into it and switched per run, the
heads each adapter trained switched with it, zero-shot on the base's own, full fine-tuned runs
on their own weights. Each run answers through its task object (`task.predict`), the code its
test evaluation ran, with the inputs formatted as in training.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from peftlab.config.schema import ExperimentConfig
from peftlab.errors import NotFound, PeftlabError
from peftlab.infer.pool import ModelPool
from peftlab.methods import get_method
from peftlab.store import Run, Store
from peftlab.tasks.spec import spec

if TYPE_CHECKING:
    from peftlab.infer.engine import Engine

MAX_NEW_TOKENS_LIMIT = 256

# peftlab.infer.loading and peftlab.models.trained (torch, transformers, peft) are imported
# where a model is needed, so that the service starts in a second.


class Playground:
    def __init__(self, store: Store, pool: ModelPool | None = None) -> None:
        self.store = store
        self.pool = pool or ModelPool()
        # held by a merged export (a model-sized job of its own): one at a time in the service
        self.lock = threading.Lock()

    @property
    def base_loads(self) -> int:
        """How many times a base model was loaded (tests check it stays 1)."""
        return self.pool.base_loads

    @property
    def switches(self) -> int:
        """Adapter type switches (unload + inject)."""
        return self.pool.switches

    def chat(self, experiment: str) -> bool:
        """Whether the experiment's runs were trained on conversations (a chat `data.format` or
        `data.as_chat`): the playground then holds a conversation with each run."""
        from pydantic import ValidationError

        exp = self.store.experiment(experiment) or {}
        try:
            cfg = ExperimentConfig.model_validate(exp.get("config") or {})
        except ValidationError:  # an experiment saved by an older peftlab: no conversation then
            return False
        return spec(cfg.task).decoder_only and cfg.data.chat

    def runs_for(self, experiment: str) -> list[dict[str, Any]]:
        """The runs of an experiment and whether each can be tried here."""
        out = []
        for r in self.store.runs(experiment):
            ok, why = self.usable(r)
            out.append({"id": r.id, "name": r.name, "method": r.method, "status": r.status, "available": ok,
                        "why": why})
        return out

    @staticmethod
    def usable(r: Run) -> tuple[bool, str | None]:
        from peftlab.infer.loading import adapter_dir

        if r.status != "done":
            return False, f"{r.status}, not done"
        method = get_method(r.method)
        if method.is_baseline:
            return True, None
        d = adapter_dir(r)
        if method.is_full:
            return (True, None) if d is not None and (d / "config.json").is_file() else (
                False, "its fine-tuned model is missing from the store")
        if d is None or not (d / "adapter_config.json").is_file():
            return False, "its adapter is missing from the store"
        return True, None

    # -- the request ----------------------------------------------------------
    def generate(self, experiment: str, runs: list[str] | None, text: str | None = None,
                 inputs: dict[str, Any] | None = None, max_new_tokens: int | None = None,
                 num_beams: int | None = None) -> dict[str, Any]:
        """Each run's answer through its task, as its test evaluation decodes (greedy, or beam
        search with `num_beams`)."""
        from peftlab.infer.loading import example, source_text
        from peftlab.models.trained import answer_precision, run_config
        from peftlab.tasks.build import build_task

        chosen, cfg = self._chosen(experiment, runs, text, inputs, max_new_tokens)
        src = source_text(cfg, text, inputs)
        ex = example(src)
        beams = num_beams if num_beams and num_beams > 1 and spec(cfg.task).generative else None
        results: dict[str, dict[str, Any]] = {}
        # zero-shot first (any adapter type can be loaded for it), then the adapters grouped by
        # type, the one loaded now first: a request switches adapter types at most once per type
        for r in sorted(chosen, key=self._order):
            t0 = time.perf_counter()
            run_cfg = _with_decoding(run_config(r)[0], max_new_tokens, beams)
            with self.pool.use(r) as slot, self.pool.model_for(slot, r) as model:
                task = build_task(run_cfg, slot.tok, None, (r.info or {}).get("labels"), answer_precision(r))
                pred = task.predict(model, [ex], desc="playground")[0]
            results[r.name] = {"run": r.name, "run_id": r.id, "method": r.method, "output": pred.output,
                               "stopped": pred.stopped, "seconds": round(time.perf_counter() - t0, 3),
                               **({"confidence": pred.extra["confidence"]} if "confidence" in pred.extra else {})}
        return {"experiment": experiment, "input": src, "outputs": [results[r.name] for r in chosen],
                "base_model_loads": self.base_loads, "sampling": {"num_beams": beams} if beams else None}

    def sample(self, engine: Engine, experiment: str, runs: list[str] | None, *, text: str | None = None,
               inputs: dict[str, Any] | None = None, messages: dict[str, list[dict[str, Any]]] | None = None,
               max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None) -> dict[str, Any]:
        """Each run's answer drawn with a temperature and top-p, or to a conversation (`messages`:
        each run's own turns so far, ending with the user's), through the serving engine
        (`infer.engine`: the decoder of the OpenAI-compatible endpoint, the run's prompt built as
        training built it)."""
        from peftlab.infer.errors import ServeError
        from peftlab.infer.loading import source_text

        chosen, cfg = self._chosen(experiment, runs, text, inputs, max_new_tokens,
                                   conversation=messages is not None)
        src = None if messages is not None else source_text(cfg, text, inputs)
        jobs = []
        for r in chosen:
            msgs = (messages or {}).get(r.name) if messages is not None else None
            if messages is not None and not msgs:
                raise PeftlabError(f"messages: no conversation for run {r.name!r}")
            try:
                jobs.append((r, time.perf_counter(), engine.prepare(
                    f"{experiment}/{r.name}", messages=msgs, source=src, max_tokens=max_new_tokens,
                    temperature=temperature, top_p=top_p, seed=seed)))
            except ServeError as e:
                raise PeftlabError(f"run {r.name!r}: {e}") from None
        futures = [(r, t0, job, engine.submit(job)) for r, t0, job in jobs]
        outputs = []
        for r, t0, _job, fut in futures:
            a = fut.result()
            outputs.append({"run": r.name, "run_id": r.id, "method": r.method, "output": a["text"],
                            "stopped": a["finish_reason"] == "stop", "seconds": round(time.perf_counter() - t0, 3),
                            **({"confidence": a["confidence"]} if a.get("confidence") is not None else {})})
        applied = {"temperature": temperature, "top_p": top_p, "seed": seed} if temperature > 0 else None
        return {"experiment": experiment, "input": src, "outputs": outputs, "base_model_loads": self.base_loads,
                "sampling": applied, "conversation": messages is not None}

    def _chosen(self, experiment: str, runs: list[str] | None, text: str | None, inputs: dict[str, Any] | None,
                max_new_tokens: int | None, conversation: bool = False) -> tuple[list[Run], ExperimentConfig]:
        """The request's runs, each checked usable, and the first one's config."""
        from peftlab.infer.loading import text_task_or_error
        from peftlab.models.trained import run_config

        exp = self.store.experiment(experiment)
        if exp is None:
            raise NotFound(f"no experiment {experiment!r}")
        all_runs = {r.name: r for r in self.store.runs(experiment)}
        names = runs or [n for n, r in all_runs.items() if self.usable(r)[0]]
        if not names:
            raise PeftlabError(f"experiment {experiment!r} has no finished runs to try yet")
        unknown = [n for n in names if n not in all_runs]
        if unknown:
            raise NotFound(f"run(s) {unknown} not in experiment {experiment!r}; runs: {', '.join(all_runs)}")
        chosen = [all_runs[n] for n in names]
        for r in chosen:
            ok, why = self.usable(r)
            if not ok:
                raise PeftlabError(f"run {r.name!r} cannot be tried: {why}")
        if text is None and not inputs and not conversation:
            raise PeftlabError("give `text` (the input) or `inputs` (a value per input column)")
        cfg, _, _ = run_config(chosen[0])
        text_task_or_error(cfg)
        if max_new_tokens is not None and not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise PeftlabError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}")
        return chosen, cfg

    def _order(self, r: Run) -> tuple:
        from peftlab.infer.loading import adapter_dir, adapter_type

        method = get_method(r.method)
        d = adapter_dir(r) if method.artifact == "adapter" else None
        t = adapter_type(d) if d else ""
        return (not method.is_baseline, t != self.pool.status()["adapter_type"], t, r.id)

    def status(self) -> dict[str, Any]:
        return self.pool.status()


def _with_decoding(cfg: ExperimentConfig, max_new_tokens: int | None, num_beams: int | None) -> ExperimentConfig:
    """The run's evaluation settings (its decoding: greedy, or its beams), with another length of
    output, or beam search with `num_beams`."""
    update: dict[str, Any] = {}
    if max_new_tokens is not None:
        update["max_new_tokens"] = max_new_tokens
    if num_beams is not None:
        update["num_beams"] = num_beams
    if not update:
        return cfg
    return cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update=update)})
