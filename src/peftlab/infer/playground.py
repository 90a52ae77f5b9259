"""The playground: one input, the outputs of several runs side by side.

ONE copy of the base model is loaded (per base model and task; loading another base drops
the previous one). Adapters are loaded into it with peft (`PeftModel.from_pretrained` for
the first, `load_adapter` for the rest) and switched per request with `set_adapter`;
zero-shot runs with the adapters disabled (`disable_adapter`). peft cannot hold adapters of
different types (LoRA and IA3, say) in one PeftModel, so when a request needs another type
the adapter layers are removed (`unload()`, which restores the base modules unchanged) and
the other type's adapters are injected into the same base model. Requests are serialised
by a lock: one model, one generation at a time.

Full fine-tuning produces a whole model rather than an adapter; it is not offered here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from peftlab.config.schema import ExperimentConfig
from peftlab.errors import NotFound, PeftlabError
from peftlab.methods import get_method
from peftlab.store import Run, Store

MAX_NEW_TOKENS_LIMIT = 256

# peftlab.infer.loading and peftlab.models.trained (torch, transformers, peft) are imported
# where a model is needed, so that the service starts in a second.


@dataclass
class _Loaded:
    key: tuple
    base: Any  # the one base model (never copied)
    tok: Any
    peft: Any = None  # the PeftModel wrapping `base`, or None
    peft_type: str | None = None
    adapters: dict[str, int] = field(default_factory=dict)  # adapter name -> run id, in `peft`


class Playground:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.loaded: _Loaded | None = None
        self.base_loads = 0  # how many times a base model was loaded (tests check it stays 1)
        self.switches = 0  # adapter type switches (unload + inject)

    def runs_for(self, experiment: str) -> list[dict[str, Any]]:
        """The runs of an experiment and whether each can be tried here."""
        out = []
        for r in self.store.runs(experiment):
            ok, why = self._usable(r)
            out.append({"id": r.id, "name": r.name, "method": r.method, "status": r.status, "available": ok,
                        "why": why})
        return out

    @staticmethod
    def _usable(r: Run) -> tuple[bool, str | None]:
        from peftlab.infer.loading import adapter_dir

        if r.status != "done":
            return False, f"{r.status}, not done"
        method = get_method(r.method)
        if method.is_baseline:
            return True, None
        if method.is_full:
            return False, "full fine-tuning makes a whole model, not an adapter; export it to try it"
        d = adapter_dir(r)
        if d is None or not (d / "adapter_config.json").is_file():
            return False, "its adapter is missing from the store"
        return True, None

    # -- model management -----------------------------------------------------
    def _ensure_base(self, cfg: ExperimentConfig, run: Run) -> _Loaded:
        from peftlab.infer.loading import load_base
        from peftlab.models.trained import run_config

        cfg0, _, base_dir = run_config(run)
        labels = (run.info or {}).get("labels")
        key = (cfg.model.model_dump_json(), str(base_dir), cfg.task, tuple(labels or ()))
        if self.loaded is None or self.loaded.key != key:
            self.loaded = None  # drop the previous base before loading the next one
            model, tok, _ = load_base(cfg0, base_dir, labels)
            self.loaded = _Loaded(key, model, tok)
            self.base_loads += 1
        return self.loaded

    def _activate(self, ld: _Loaded, run: Run) -> Any:
        """Make `run`'s adapter the active one; returns the model to generate with."""
        from peft import PeftModel

        from peftlab.infer.loading import adapter_dir, adapter_type

        path = adapter_dir(run)
        assert path is not None
        ptype = adapter_type(path)
        name = f"run{run.id}"
        if ld.peft is not None and ld.peft_type != ptype:
            self._unload(ld)
            self.switches += 1
        if ld.peft is None:
            ld.peft = PeftModel.from_pretrained(ld.base, str(path), adapter_name=name, is_trainable=False)
            ld.peft.eval()
            ld.peft_type = ptype
            ld.adapters = {name: run.id}
        elif name not in ld.adapters:
            ld.peft.load_adapter(str(path), adapter_name=name, is_trainable=False)
            ld.adapters[name] = run.id
        ld.peft.set_adapter(name)
        return ld.peft

    @staticmethod
    def _unload(ld: _Loaded) -> None:
        if ld.peft is None:
            return
        if ld.peft.active_peft_config.is_prompt_learning:
            ld.base = ld.peft.get_base_model()  # prompt learning never touched the base modules
        else:
            ld.base = ld.peft.unload()  # removes the adapter layers, base weights unchanged
        ld.peft, ld.peft_type, ld.adapters = None, None, {}

    # -- the request ----------------------------------------------------------
    def generate(self, experiment: str, runs: list[str] | None, text: str | None = None,
                 inputs: dict[str, Any] | None = None, max_new_tokens: int | None = None) -> dict[str, Any]:
        from peftlab.infer.loading import example, source_text, text_task_or_error
        from peftlab.models.trained import run_config
        from peftlab.tasks.build import build_task

        exp = self.store.experiment(experiment)
        if exp is None:
            raise NotFound(f"no experiment {experiment!r}")
        all_runs = {r.name: r for r in self.store.runs(experiment)}
        names = runs or [n for n, r in all_runs.items() if self._usable(r)[0]]
        if not names:
            raise PeftlabError(f"experiment {experiment!r} has no finished runs to try yet")
        unknown = [n for n in names if n not in all_runs]
        if unknown:
            raise NotFound(f"run(s) {unknown} not in experiment {experiment!r}; runs: {', '.join(all_runs)}")
        chosen = [all_runs[n] for n in names]
        for r in chosen:
            ok, why = self._usable(r)
            if not ok:
                raise PeftlabError(f"run {r.name!r} cannot be tried: {why}")
        if text is None and not inputs:
            raise PeftlabError("give `text` (the input) or `inputs` (a value per input column)")
        cfg, _, _ = run_config(chosen[0])
        text_task_or_error(cfg)
        if max_new_tokens is not None:
            if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
                raise PeftlabError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}")
            cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(
                update={"max_new_tokens": max_new_tokens, "num_beams": 1})})
        src = source_text(cfg, text, inputs)
        results: dict[str, dict[str, Any]] = {}
        with self.lock:
            ld = self._ensure_base(cfg, chosen[0])
            labels = (chosen[0].info or {}).get("labels")
            task = build_task(cfg, ld.tok, None, labels)
            ex = example(src)
            # Zero-shot first (adapters disabled), then adapters grouped by type so a
            # request switches adapter types at most once per type.
            order = sorted(chosen, key=lambda r: (not get_method(r.method).is_baseline, self._type_rank(ld, r), r.id))
            for r in order:
                t0 = time.perf_counter()
                if get_method(r.method).is_baseline:
                    if ld.peft is None:
                        pred = task.predict(ld.base, [ex], desc="playground")[0]
                    elif ld.peft.active_peft_config.is_prompt_learning:
                        pred = task.predict(ld.peft.get_base_model(), [ex], desc="playground")[0]
                    else:
                        with ld.peft.disable_adapter():
                            pred = task.predict(ld.peft, [ex], desc="playground")[0]
                else:
                    model = self._activate(ld, r)
                    pred = task.predict(model, [ex], desc="playground")[0]
                results[r.name] = {"run": r.name, "run_id": r.id, "method": r.method, "output": pred.output,
                                   "stopped": pred.stopped, "seconds": round(time.perf_counter() - t0, 3),
                                   **({"confidence": pred.extra["confidence"]} if "confidence" in pred.extra else {})}
        return {"experiment": experiment, "input": src, "outputs": [results[n] for n in names],
                "base_model_loads": self.base_loads}

    @staticmethod
    def _type_rank(ld: _Loaded, r: Run) -> tuple[int, str]:
        from peftlab.infer.loading import adapter_dir, adapter_type

        if get_method(r.method).is_baseline:
            return (0, "")
        d = adapter_dir(r)
        t = adapter_type(d) if d else ""
        return (0 if t == ld.peft_type else 1, t)

    def status(self) -> dict[str, Any]:
        ld = self.loaded
        return {"loaded": ld is not None, "adapter_type": ld.peft_type if ld else None,
                "adapters": sorted(ld.adapters) if ld else [], "base_model_loads": self.base_loads,
                "adapter_type_switches": self.switches}
