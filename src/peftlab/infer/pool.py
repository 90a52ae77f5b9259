"""The models the service holds, shared by the playground and the OpenAI-compatible endpoint:
one copy of each base model with the adapters of its runs loaded into it and switched per
request, and the whole models of full fine-tuned runs, under a memory limit.

Every answer must be what the run's own test evaluation produced for that input. What that
takes, and where it is done here:
- Heads (`modules_to_save`: the classifier and BERT's pooler, which every classification method
  trains): peft gives each adapter its own copy, switched with it by `set_adapter`, and keeps
  the base's own module as `original_module`. peft's `unload()` would put the *active adapter's*
  trained copy into the base (and its generic unload reads a `.weight` BERT's pooler has not),
  so `_unload` puts every `original_module` back first: the base stays the base.
- Zero-shot: the base with every adapter layer and wrapped head disabled (`_base_view`); the
  base is loaded under the run's training seed, so a head the checkpoint lacks is the head the
  zero-shot run evaluated (`peftlab.models.trained.seeded`).
- Adapter types: peft holds one type per PeftModel; another type unloads this one first.
  Prompt-learning adapters (virtual tokens) never touch the base modules: the base is taken back.
- Full fine-tuning: the run's own weights in a slot of their own.
- Adapters that change base weights on load (a trained `bias`), and 4-bit (qlora) bases: a base
  of their own (the key says so), never shared with runs that expect the plain base.
- The test evaluation ran with the adapter merged into the weights (`merged_for_inference`);
  here it stays unmerged so that adapters switch without touching the base, which differs by
  float rounding only (greedy outputs and labels equal; confidences within 1e-4, tested).

A slot is used under its own lock (one model, one forward at a time); the pool's lock guards
the table. Slots not in use are dropped least-recently-used when the loaded models together
exceed `memory_mb`; the one being used always stays.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.methods import get_method
from peftlab.store import Run

DEFAULT_MEMORY_MB = 4096.0
BASE = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


@dataclass(eq=False)
class Slot:
    key: tuple
    model: Any  # the base model (never copied), or a full fine-tuned run's model
    tok: Any
    peft: Any = None  # the PeftModel wrapping `model`, or None
    peft_type: str | None = None
    adapters: dict[str, int] = field(default_factory=dict)  # adapter name -> run id, in `peft`
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0
    last_used: float = 0.0
    nbytes: int = 0


def adapter_name(run: Run) -> str:
    return f"run{run.id}"


def adapter_config(run: Run) -> dict[str, Any]:
    from peftlab.infer.loading import adapter_dir

    d = adapter_dir(run)
    try:
        return json.loads((d / "adapter_config.json").read_text(encoding="utf-8")) if d else {}
    except (OSError, json.JSONDecodeError) as e:
        raise PeftlabError(f"run {run.name!r}: its adapter_config.json is unreadable ({e})") from None


def mixable(run: Run) -> bool:
    """Whether the run can share a batch with other runs of its base, each row with its own adapter
    (`adapter_names=` in peft's forward and generate). In peft 0.21 LoRA's layers implement it
    (`LoraLayer._mixed_batch_forward`), but not with DoRA (refused in `_check_forward_args`), nor
    AdaLoRA's SVD layers (their forward takes no `adapter_names`), nor the other tuners; a wrapped
    head mixes only for linear/embedding/conv modules (BERT's pooler is none). So: the zero-shot
    row (peft's "__base__") and plain LoRA adapters without heads."""
    method = get_method(run.method)
    if method.is_baseline:
        return True
    if method.artifact != "adapter" or _quantized(run):
        return False
    c = adapter_config(run)
    return (c.get("peft_type") == "LORA" and not c.get("use_dora") and not c.get("modules_to_save")
            and not c.get("alora_invocation_tokens") and not c.get("layer_replication")
            and not c.get("trainable_token_indices")
            and c.get("bias", "none") == "none")


def _quantized(run: Run) -> bool:
    """Whether the run's base loads 4-bit quantized (the method's own options say)."""
    from peftlab.models.trained import run_config

    method = get_method(run.method)
    return method.quantized(method.parse_options(run_config(run)[1].options))


def _nbytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


class ModelPool:
    def __init__(self, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        self.memory_bytes = int(memory_mb * 2**20)
        self.lock = threading.Lock()
        self.slots: dict[tuple, Slot] = {}
        self.base_loads = 0  # base models loaded (one per base while it stays within the limit)
        self.full_loads = 0  # full fine-tuned runs loaded
        self.switches = 0  # adapter type switches (unload + inject)
        self.evictions = 0

    # -- which slot a run needs -------------------------------------------------
    @staticmethod
    def key(run: Run) -> tuple:
        """What the run's model is, without loading it: runs with equal keys share one model."""
        from peftlab.models.trained import run_config
        from peftlab.tasks.spec import spec

        cfg, entry, base = run_config(run)
        method = get_method(run.method)
        if method.is_full:
            return ("full", run.id)
        labels = tuple((run.info or {}).get("labels") or ())
        # a head the checkpoint lacks is drawn from the seed: only runs of that seed share it
        seed = cfg.training.seed if spec(cfg.task).target_key == "label" else None
        own = None
        if method.quantized(method.parse_options(entry.options)):
            own = ("load", json.dumps(_load_kwargs(run), default=str, sort_keys=True))
        elif method.artifact == "adapter" and (adapter_config(run).get("bias", "none") != "none"
                                               or adapter_config(run).get("trainable_token_indices")):
            own = ("run", run.id)  # the adapter rewrites the base's biases or embedding rows as it loads
        return ("base", cfg.model.model_dump_json(), str(base), cfg.task, labels, seed, own)

    @contextlib.contextmanager
    def use(self, run: Run) -> Iterator[Slot]:
        """The slot `run` needs, loaded if it is not, held (its lock, kept from eviction) for the block."""
        key = self.key(run)
        with self.lock:
            slot = self.slots.get(key)
            if slot is None:
                self._evict(keep=None, room=_estimate_bytes(run))  # make room before, not after
                slot = self._load(key, run)
                slot.last_used = time.monotonic()
                self.slots[key] = slot
                self._evict(keep=slot)
            slot.users += 1
        try:
            with slot.lock:
                slot.last_used = time.monotonic()
                yield slot
        finally:
            with self.lock:
                slot.users -= 1
                slot.nbytes = _nbytes(slot.peft if slot.peft is not None else slot.model)
                self._evict(keep=None)

    def _load(self, key: tuple, run: Run) -> Slot:
        from peftlab.infer.loading import load_base
        from peftlab.models.trained import run_config

        cfg, _, base = run_config(run)
        labels = (run.info or {}).get("labels")
        full = key[0] == "full"
        weights = str(run.file("artifact")) if full else None
        model, tok, _ = load_base(cfg, base, labels, weights=weights, **_load_kwargs(run))
        if full:
            self.full_loads += 1
        else:
            self.base_loads += 1
        return Slot(key, model, tok, nbytes=_nbytes(model))

    def _evict(self, keep: Slot | None, room: int = 0) -> None:
        """Drop idle slots, least recently used first, while the loaded models (and `room` bytes
        about to load) exceed the limit; the slot just loaded or last used stays, whatever its size
        (`room` > 0: none stays, the next one is loading)."""
        if not self.slots:
            return
        if keep is None and not room:
            keep = max(self.slots.values(), key=lambda s: s.last_used)
        total = sum(s.nbytes for s in self.slots.values()) + room
        dropped = 0
        for s in sorted(self.slots.values(), key=lambda s: s.last_used):
            if total <= self.memory_bytes:
                break
            if s is keep or s.users:
                continue
            del self.slots[s.key]
            total -= s.nbytes
            dropped += 1
        if dropped:
            self.evictions += dropped
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- the model a run answers with (slot lock held) --------------------------
    @contextlib.contextmanager
    def model_for(self, slot: Slot, run: Run) -> Iterator[Any]:
        """The model to call for `run`: the base as is (zero-shot), the run's own (full), or the
        base with the run's adapter active."""
        method = get_method(run.method)
        if method.is_baseline:
            with self._base_view(slot) as m:
                yield m
        elif method.is_full:
            yield slot.model
        else:
            yield self._activate(slot, run)

    @contextlib.contextmanager
    def mixed(self, slot: Slot, runs: list[Run]) -> Iterator[tuple[Any, list[str]]]:
        """One model for rows of several `mixable` runs, and the adapter name of each run for
        peft's `adapter_names=` (the zero-shot row: "__base__")."""
        adapters = [r for r in runs if not get_method(r.method).is_baseline]
        if not adapters:
            with self._base_view(slot) as m:
                yield m, [BASE] * len(runs)
            return
        for r in adapters:
            model = self._activate(slot, r)
        yield model, [BASE if get_method(r.method).is_baseline else adapter_name(r) for r in runs]

    def _activate(self, slot: Slot, run: Run) -> Any:
        from peft import PeftModel

        from peftlab.infer.loading import adapter_dir, adapter_type

        path = adapter_dir(run)
        if path is None:
            raise PeftlabError(f"run {run.name!r} has no adapter in the store")
        ptype = adapter_type(path)
        name = adapter_name(run)
        if slot.peft is not None and slot.peft_type != ptype:
            self._unload(slot)
            self.switches += 1
        if slot.peft is None:
            with warnings.catch_warnings():  # peft 0.21's own read of a deprecated property (methods.common.wrap)
                warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                        category=FutureWarning)
                slot.peft = PeftModel.from_pretrained(slot.model, str(path), adapter_name=name, is_trainable=False)
            slot.peft.eval()
            slot.peft_type = ptype
            slot.adapters = {name: run.id}
        elif name not in slot.adapters:
            slot.peft.load_adapter(str(path), adapter_name=name, is_trainable=False)
            slot.adapters[name] = run.id
        slot.peft.set_adapter(name)
        return slot.peft

    @staticmethod
    @contextlib.contextmanager
    def _base_view(slot: Slot) -> Iterator[Any]:
        """The base model, every adapter off: peft's `disable_adapter` turns off the adapter layers
        and wrapped heads for layer tuners, but for prompt learning only skips the virtual tokens,
        leaving the heads on the active adapter's copies: those are turned off here."""
        peft = slot.peft
        if peft is None:
            yield slot.model
        elif peft.active_peft_config.is_prompt_learning:
            wrappers = _wrappers(peft)
            for w in wrappers:
                w.enable_adapters(False)
            try:
                yield peft.get_base_model()
            finally:
                for w in wrappers:
                    w.enable_adapters(True)
        else:
            with peft.disable_adapter():
                yield peft

    @staticmethod
    def _unload(slot: Slot) -> None:
        """Remove every adapter, leaving the base model exactly as it loaded (see the module)."""
        peft = slot.peft
        if peft is None:
            return
        wrapped = {id(w) for w in _wrappers(peft)}
        for name, w in [(n, m) for n, m in peft.named_modules() if id(m) in wrapped]:
            parent_name, _, attr = name.rpartition(".")
            setattr(peft.get_submodule(parent_name) if parent_name else peft, attr, w.original_module)
        if peft.active_peft_config.is_prompt_learning:
            slot.model = peft.get_base_model()  # prompt learning never touched the base modules
        elif peft.active_peft_config.is_adaption_prompt:
            peft.base_model.disable_adapter_layers()  # puts the original attention modules back
            slot.model = peft.base_model.model
        else:
            slot.model = peft.unload()  # removes the adapter layers, base weights unchanged
        if hasattr(slot.model, "peft_config"):
            del slot.model.peft_config
        slot.peft, slot.peft_type, slot.adapters = None, None, {}

    def status(self) -> dict[str, Any]:
        with self.lock:
            slots = list(self.slots.values())
        bases = [s for s in slots if s.key[0] == "base"]
        return {"loaded": bool(slots), "adapter_type": next((s.peft_type for s in bases if s.peft_type), None),
                "adapters": sorted(a for s in bases for a in s.adapters), "base_model_loads": self.base_loads,
                "full_model_loads": self.full_loads, "adapter_type_switches": self.switches,
                "models_loaded": len(slots), "memory_mb": round(sum(s.nbytes for s in slots) / 2**20, 1),
                "memory_limit_mb": round(self.memory_bytes / 2**20, 1), "evictions": self.evictions}


def _wrappers(peft: Any) -> list[Any]:
    from peft.utils.other import AuxiliaryTrainingWrapper

    return [m for m in peft.modules() if isinstance(m, AuxiliaryTrainingWrapper)]


def _estimate_bytes(run: Run) -> int:
    """The weight files of the model a run loads (its own for a full run), as a guess of its size."""
    from peftlab.models import resolve_model
    from peftlab.models.trained import run_config

    cfg, _, base = run_config(run)
    try:
        folder = run.file("artifact") if get_method(run.method).is_full else resolve_model(cfg.model, base).path
        return sum(f.stat().st_size for f in Path(str(folder)).glob("*.safetensors"))
    except (OSError, PeftlabError, TypeError):
        return 0


def _load_kwargs(run: Run) -> dict[str, Any]:
    """`from_pretrained` extras the run's method loads its base with (4-bit for qlora)."""
    from peftlab.methods import MethodContext
    from peftlab.models.trained import run_config

    method = get_method(run.method)
    if method.load_kwargs is None:
        return {}
    cfg, entry, _ = run_config(run)
    ctx = MethodContext(task=cfg.task, model_type="", total_steps=1)
    return method.load_kwargs(method.parse_options(entry.options), ctx)
