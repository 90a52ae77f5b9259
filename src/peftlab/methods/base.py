"""What a PEFT method is to peftlab: defaults, applicability, and how to wrap a model.

A method is one module in this folder exporting `METHOD`, plus one line in the registry
(`peftlab/methods/__init__.py`). The heavy lifting is peft's; a method only chooses the
peft config and its defaults for the task and architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

ALL_TASKS = frozenset({"causal-lm", "seq2seq", "classification", "image-classification"})
TEXT_TASKS = frozenset({"causal-lm", "seq2seq", "classification"})


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
    # Prompt learning: the adapter prepends virtual tokens, as "embeddings" (prompt-/p-tuning)
    # or as key/value prefixes in every layer ("kv", prefix-tuning); None for the rest.
    virtual_tokens: str | None = None

    def learning_rate(self, task: str) -> float:
        return self.learning_rates.get(task, self.learning_rates["default"])

    def parse_options(self, raw: dict[str, Any]) -> MethodOptions:
        return self.options.model_validate(raw)
