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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from peftlab.tasks.spec import ALL_TASKS, CLASSIFICATION, IMAGE_CLASSIFICATION

# LoRA and its variants share their learning rates: classifier heads start from scratch and
# train faster at a higher rate; the ViT default is measured lower.
LORA_LEARNING_RATES = {"default": 2e-4, CLASSIFICATION: 2e-3, IMAGE_CLASSIFICATION: 5e-4}


def rates(default: float, classification: float | None = None, image: float | None = None) -> dict[str, float]:
    """A `learning_rates` table: `default` for the generative tasks, and the classification and
    image rates where a source gives them (else the default)."""
    return {"default": default, CLASSIFICATION: classification or default, IMAGE_CLASSIFICATION: image or default}


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
    # Training batches for the data-driven initialisations (LoRA's EVA, CorDA, LoRA-GA), None when
    # the caller has none (the parameter estimate on an empty model; a recipe not wired for them).
    # Contract: a call returns a fresh iterable over collated training batches, each a dict the
    # model takes as `model(**batch)` *with* `labels` (the task's `collate` output: input_ids,
    # attention_mask, labels; pixel_values, labels for images), tensors already on the model's
    # device. The method reads the first few batches (its `calibration_batches` option) and may
    # call it more than once; the batches are not trained on, so the run's data order is unchanged
    # if the callable draws them from its own iterator over the training split.
    calibration: Callable[[], Iterable[dict[str, Any]]] | None = None


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
    # A term the method adds to the training loss, `extra_loss(model, batch)` with the wrapped model
    # just run forward on `batch` (labels included): AdaLoRA's orthogonality penalty, ShadowPEFT's
    # auxiliary loss. peft adds such terms only when the model computes its own loss.
    extra_loss: Callable[[Any, dict[str, Any]], Any] | None = None
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
    # The peft.PeftType member (its name) the method configures, for the catalogue (`peftlab methods`);
    # None: the method's name in peft's spelling (ia3 -> IA3, prefix-tuning -> PREFIX_TUNING).
    peft_type: str | None = None
    # peft's tuner for this method has a bitsandbytes 4-bit layer, so the method takes the
    # `quantize: 4bit` option (methods/quantize.py); whether a run's base is 4-bit is `quantized(opts)`.
    quantizable: bool = False
    # The optimizer the method needs, or None for the trainer's default AdamW:
    # `make_optimizer(model, opts, lr, weight_decay)` -> a torch.optim.Optimizer, or None when these
    # options need no special one. The trainer calls it once after `apply` and passes the result to
    # transformers' Trainer as `optimizers=(optimizer, None)` (the schedule is then built over its
    # parameter groups, each group's rate scaled alike). LoRA+ uses it: lora_B at 16x the rate.
    make_optimizer: Callable[[Any, Any, float, float], Any] | None = None
    # The adapter is built from the base weights' values (AdaMSS clusters their SVD, FRoD builds a
    # basis from them), so it cannot be applied to an empty (meta) model: preflight skips it and the
    # estimate has no trainable count for it (the run counts them).
    init_reads_weights: bool = False

    @property
    def is_baseline(self) -> bool:
        """The untouched base model (the zero-shot row)."""
        return not self.trains and self.artifact is None

    @property
    def is_full(self) -> bool:
        """Every weight trains and the run saves the whole model (the full fine-tuning row)."""
        return self.artifact == "model"

    @property
    def merge_refusal(self) -> str | None:
        """Why a run of this method cannot be merged into its base, in the user's words; None when
        it can (the merged export, the web page's Export, the CLI's `--merge`)."""
        if self.is_baseline:
            return f"{self.name} trains nothing: the base model itself is the result"
        if self.is_full:
            return "a fully fine-tuned run is already a whole model: download it as it is (nothing to merge)"
        if not self.mergeable:
            return (f"{self.name} adds virtual tokens (or modules) instead of weight deltas, so it cannot be merged "
                    "into the weights; download the adapter and load it with PeftModel.from_pretrained")
        return None

    def learning_rate(self, task: str) -> float:
        return self.learning_rates.get(task, self.learning_rates["default"])

    def parse_options(self, raw: dict[str, Any]) -> MethodOptions:
        """Validated options (`methods.validate_method` says first why an option does not apply)."""
        return self.options.model_validate(raw)

    def quantized(self, opts: MethodOptions) -> bool:
        """Whether this run's base model loads 4-bit quantized (bitsandbytes NF4/FP4)."""
        return getattr(opts, "quantize", None) == "4bit"

    def count_trainable(self, model: Any, opts: MethodOptions, ctx: MethodContext) -> int:
        """Trainable parameters once the method is applied to `model`, which may be an empty
        (meta-device) copy: the estimate applies the method itself, so it is the real count
        (heads and poolers that train with it included) for every method, present and future."""
        if not self.trains:
            return 0
        return parameter_counts(self.apply(model, opts, ctx) if self.apply is not None else model)[0]


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total); counts 4-bit packed weights at their logical size, as peft does."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
