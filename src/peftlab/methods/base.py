"""What a PEFT method is to peftlab: defaults, traits, applicability, and how to wrap a model.

A method is one module in this folder exporting `METHOD`, plus one line in the registry
(`peftlab/methods/__init__.py`). The heavy lifting is peft's; a method only chooses the
peft config and its defaults for the task and architecture. Its quirks are its own traits
(what it saves, whether it adds virtual tokens, whether it merges...), so the rest of
peftlab asks traits and never compares method names (peft's tuners do the same with class
attributes such as `LoraModel.prefix`).

This module and the registry import neither torch nor peft: a method imports peft inside
`apply`, so the report, the web service and `peftlab methods` read the catalogue cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from peftlab.tasks.spec import ALL_TASKS, CLASSIFICATION, IMAGE_CLASSIFICATION

# LoRA and its variants share their learning rates: classifier heads start from scratch and
# train faster at a higher rate; the ViT default is measured lower.
LORA_LEARNING_RATES = {"default": 2e-4, CLASSIFICATION: 2e-3, IMAGE_CLASSIFICATION: 5e-4}


class MethodOptions(BaseModel):
    """Options a method accepts in the experiment file; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class MethodContext:
    """Everything a method needs to know to configure itself for one run."""

    task: str
    model_type: str
    total_steps: int
    tokenizer_path: str | None = None
    prompt_text: str | None = None  # static text of the prompt template (prompt-tuning init)
    head_modules: list[str] = field(default_factory=list)  # new heads that must train (classifiers)
    precision: str = "fp32"
    tokenizer: Any = None  # the run's tokenizer (prefix-tuning's text initialisation)


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    options: type[MethodOptions]
    # Default learning rate per task ("default" for the rest). Prompt-based methods need
    # far higher rates than LoRA; full fine-tuning far lower.
    learning_rates: dict[str, float]
    apply: Callable[[Any, Any, MethodContext], Any] | None = None
    tasks: frozenset[str] = ALL_TASKS
    trains: bool = True
    # Extra `from_pretrained` kwargs (quantization) for methods that change how the base loads.
    load_kwargs: Callable[[Any, MethodContext], dict[str, Any]] | None = None
    needs_total_steps: bool = False
    # A term the method adds to the training loss, given the wrapped model (AdaLoRA's
    # orthogonality penalty). peft adds such terms only when the model computes its own loss.
    extra_loss: Callable[[Any], Any] | None = None
    # Trainer callbacks the method needs, given the wrapped model (AdaLoRA's rank allocation).
    callbacks: Callable[[Any], list[Any]] | None = None
    # -- traits: what callers ask instead of the name ---------------------------------------
    # Grouping in the report and the web UI: zero-shot, full, low-rank, scaling, prompt, ...
    family: str = "low-rank"
    # What a trained run saves: a peft adapter, the whole model, or nothing (zero-shot).
    artifact: Literal["adapter", "model"] | None = "adapter"
    # Prompt learning: the adapter prepends virtual tokens, as "embeddings" (prompt-/p-tuning)
    # or as key/value prefixes in every layer ("kv", prefix-tuning); None for the rest.
    virtual_tokens: Literal["embeddings", "kv"] | None = None
    # The adapter folds into the base weights (merged export; the test evaluation runs merged).
    mergeable: bool = False
    # The base model loads 4-bit quantized (bitsandbytes NF4/FP4).
    quantized_base: bool = False
    # The peft.PeftType member (its name) the method configures, for the catalogue (`peftlab methods`);
    # None: the method's name in peft's spelling (ia3 -> IA3, prefix-tuning -> PREFIX_TUNING).
    peft_type: str | None = None

    @property
    def is_baseline(self) -> bool:
        """The untouched base model (the zero-shot row)."""
        return not self.trains and self.artifact is None

    @property
    def is_full(self) -> bool:
        """Every weight trains and the run saves the whole model (the full fine-tuning row)."""
        return self.artifact == "model"

    def learning_rate(self, task: str) -> float:
        return self.learning_rates.get(task, self.learning_rates["default"])

    def parse_options(self, raw: dict[str, Any]) -> MethodOptions:
        return self.options.model_validate(raw)

    def count_trainable(self, model: Any, opts: MethodOptions, ctx: MethodContext) -> int:
        """Trainable parameters once the method is applied to `model`, which may be an empty
        (meta-device) copy: the estimate applies the method itself, so it is the real count
        (heads and poolers that train with it included) for every method, present and future."""
        from peftlab.methods.common import parameter_counts

        if not self.trains:
            return 0
        return parameter_counts(self.apply(model, opts, ctx) if self.apply is not None else model)[0]
