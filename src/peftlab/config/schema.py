"""The experiment file schema (pydantic v2).

Every model forbids unknown keys so a typo is an error, not a silently ignored setting.
Method-specific options (rank, virtual tokens, ...) are validated by the method's own
options model in `peftlab.methods`; here a method entry only needs a known name.

A new experiment key goes here, with the checks pydantic can express; a check that needs the
file's lines (or every value, like the finite-number check) goes in `load.py`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from peftlab.tasks.spec import TaskName, spec

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# data.format values: the row formats of `peftlab.data.formats` (DATA_FORMATS, checked equal by a test;
# not imported from there: peftlab.data imports this module), plus `auto`.
CHAT_FORMATS = ("messages", "sharegpt", "alpaca", "prompt-completion")
DataFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt-completion", "columns"]


DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*"
                         r"(?:(\d+(?:\.\d+)?)\s*s)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds of a duration written as people write it: `45m`, `1h30m`, `90s`, `1.5h`, or a number
    of seconds."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    m = DURATION_RE.match(t)
    if not t or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration: write it like 45m, 1h30m, 90s or 2h")
    h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + sec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    """Where the base model comes from. A bare string in YAML becomes `path`."""

    path: str = Field(description="Local folder, .gguf file, folder name on PEFTLAB_MODEL_PATH, or hub id.")
    gguf_file: str | None = Field(None, description="GGUF file inside `path` (auto-detected if only one).")
    revision: str | None = None
    trust_remote_code: bool = Field(False, description="Run code shipped with the model. Off unless you trust it.")
    allow_pickle: bool = Field(False, description="Allow loading .bin/.pt weights (pickle). Off: safetensors/GGUF only.")


class DataConfig(_Strict):
    """Where the rows come from and how they become examples.

    `format` says how a row is read. `columns` is the input/target (or label) mapping of
    `input`/`prompt` and `target`; the chat formats (`messages`, `sharegpt`, `alpaca`,
    `prompt-completion`, see `peftlab.data.formats`) are read as conversations, trained on every
    assistant turn and evaluated on the last one. `auto`, the default, decides from the file
    itself, but only when no columns are named: an experiment file that names `input`, `prompt`,
    `target`, `label` or `image` is `columns`, as every file written before chat formats was.
    `as_chat: true` turns a `columns` mapping into a two-turn conversation (user: the prompt,
    assistant: the target), so column data goes through the same chat encoding.
    """

    train: str = Field(description="JSONL, CSV or Parquet file, or a hub dataset: 'hf://org/name', optionally "
                       "':split' ('org/name:split' works too).")
    validation: str | None = None
    test: str | None = None
    input: str | list[str] | None = Field(
        None, description="Input column(s). Defaults to the placeholders of `prompt`."
    )
    target: str | None = Field(None, description="Target column (generation tasks).")
    label: str | None = Field(None, description="Label column (classification tasks).")
    image: str | None = Field(None, description="Image column: base64 string or file path (image tasks).")
    prompt: str | None = Field(None, description="Template with {column} placeholders.")
    system_prompt: str | None = Field(None, description="System message for chat-template models (with chat "
                                      "formats: for conversations that have none of their own).")
    format: DataFormat = Field(
        "auto", description="How rows are read: columns (input/target), messages, sharegpt, alpaca, "
        "prompt-completion, or auto (detected from the file when no input/prompt/target is named).")
    as_chat: bool = Field(False, description="format columns: train the prompt and target as a two-turn "
                          "conversation (the chat template's assistant-only loss) instead of prompt + completion.")
    max_train_examples: int | None = Field(None, gt=0)
    max_validation_examples: int | None = Field(None, gt=0)
    max_test_examples: int | None = Field(None, gt=0)
    split_fractions: tuple[float, float] = Field(
        (0.1, 0.1), description="Validation and test fractions carved from train when those files are absent."
    )
    on_bad_rows: Literal["error", "skip"] = "error"
    on_long_rows: Literal["truncate", "error"] = "truncate"

    @property
    def chat(self) -> bool:
        """Whether examples are conversations: decided by the config alone, so a task built for a
        run (training, a reloaded run, the playground) knows it without reading the data."""
        if self.as_chat or self.format in CHAT_FORMATS:
            return True
        return self.format == "auto" and not (self.input or self.prompt or self.target or self.label or self.image)

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float]) -> tuple[float, float]:
        if any(f < 0 for f in v) or sum(v) >= 0.9:
            raise ValueError("fractions must be >= 0 and sum to less than 0.9")
        return v


class TrainingConfig(_Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="Overrides epochs when set.")
    batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float | None = Field(None, gt=0, description="Default: the method's own learning rate.")
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_source_length: int = Field(256, gt=0)
    max_target_length: int = Field(64, gt=0)
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    eval_every: int | None = Field(None, gt=0, description="Evaluate validation loss every N steps.")
    logging_steps: int = Field(5, gt=0)
    checkpoint_every: int | None = Field(
        None, gt=0, description="Save a resumable checkpoint every N steps (default: ~10 per run, min 20 steps)."
    )
    group_by_length: bool = True
    threads: int | None = Field(None, gt=0, description="CPU threads (default: all cores; on Ray: the run's CPU "
                                "share).")
    devices: int = Field(1, gt=0, description="Devices one run trains over (data parallel, through Accelerate); "
                         "the global batch stays `batch_size`. On a CPU machine, processes: needs strategy: ddp.")
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed-zero3"] = Field(
        "auto", description="How a run over several devices is split: auto is FSDP for full fine-tuning on GPUs, "
        "DDP otherwise.")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(default_factory=list)

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of a run on `n_train` examples: `max_steps`, else epochs x the steps of
        one epoch (batches of `batch_size`, `gradient_accumulation_steps` batches a step). The one
        formula: the runner, the recipe, the estimate and the tuner all call it."""
        if self.max_steps:
            return self.max_steps
        batches = math.ceil(max(n_train, 1) / self.batch_size)
        per_epoch = max(1, math.ceil(batches / self.gradient_accumulation_steps))
        return max(1, math.ceil(self.epochs * per_epoch))


class EvaluationConfig(_Strict):
    metrics: list[Literal["rouge", "bleu", "accuracy", "f1", "loss"]] | None = Field(
        None, description="Default: rouge+bleu+loss for generation, accuracy+f1+loss for classification."
    )
    max_new_tokens: int = Field(48, gt=0)
    num_beams: int = Field(1, gt=0)
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram_size: int = Field(0, ge=0)
    batch_size: int = Field(16, gt=0)
    bertscore_model: str | None = Field(None, description="Encoder for BERTScore (report issue).")
    precision: Literal["fp32", "auto", "bf16", "fp16"] = Field(
        "fp32", description="What every answer of a run is computed in: its test evaluation, predict, the playground "
        "and /v1. fp32 (default): the model as a user loads the download, whatever the training precision; the "
        "answers do not depend on which requests share a batch. auto/bf16/fp16: faster where native, but the "
        "exported model loaded in float32 may answer otherwise.")
    forgetting: bool | str = Field(
        True, description="Forgetting, measured on every generative run: the change against the base model of "
        "the loss on a general reference set (default: the base model's own answers to general prompts shipped "
        "with peftlab). false: off; a .txt/.jsonl/.csv/.parquet file or hf://org/name[:split]: your own set (rows "
        "of text, prompt + completion, or prompt alone, which the base continues).")

    @field_validator("forgetting")
    @classmethod
    def _forgetting(cls, v: bool | str) -> bool | str:
        if isinstance(v, str) and not v.strip():
            raise ValueError("give a file or hf://org/name of reference texts, true (the default set) or false")
        return v


class SearchRange(_Strict):
    """A numeric range to tune over: `{low: 1e-4, high: 1e-2, log: true}` (integers stay integers)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _order(self) -> SearchRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g}); swap them")
        if self.low == self.high:
            raise ValueError(f"low and high are both {self.low:g}; give a wider range, or a list of one "
                             f"choice ([{self.low:g}]) to fix the value")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g}); use log: false or a positive low")
        return self


def _search_kind(v: Any) -> str | None:
    """Which member of a `search:` value is meant: a range (a mapping) or choices (a list); None
    (an error, in `messages.plain`'s words) for anything else. One member is checked, so a bad
    range is one error, not one per member of the union."""
    if isinstance(v, dict | SearchRange):
        return "range"
    return "choices" if isinstance(v, list | tuple) else None


SearchSpace = Annotated[
    Annotated[SearchRange, Tag("range")] | Annotated[list[Any], Tag("choices"), Field(min_length=1)],
    Discriminator(_search_kind, custom_error_type="search_space",
                  custom_error_message="a list of choices or a range {low, high, log}"),
]


class MethodEntry(_Strict):
    """One row of the comparison: a method name plus overrides of its defaults."""

    name: str
    label: str | None = Field(None, description="Run name in the leaderboard (default: the method name).")
    learning_rate: float | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, SearchSpace] | None = Field(
        None, description="With tuning: this entry's search space, replacing the method's default for each key "
        "given (learning_rate or an option): a list of choices, or {low, high, log}.")

    @property
    def run_name(self) -> str:
        return self.label or self.name


class TuningConfig(_Strict):
    """Equal-budget tuning: every method gets the same number of trials, each with the same
    training budget and the same seeded sampler, scored on the validation split only."""

    trials: int = Field(gt=0, description="Trials per method (with a budget: the configurations each method may "
                        "start the race with, 3 when not given; fewer where the budget cannot train them all).")
    steps_per_trial: int | None = Field(None, gt=0, description="Optimizer steps of each trial (default: as the "
                                        "final runs train).")
    max_train_examples_per_trial: int | None = Field(None, gt=0, description="Training examples of each trial.")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna's TPE sampler, or random search.")
    seed: int = Field(0, description="The sampler's seed (the same for every method).")
    pruner: Literal["none", "median"] = Field(
        "none", description="median: Optuna's median pruner on the validation metric at each evaluation "
        "(training.eval_every; the same for every method).")
    budget: float | None = Field(
        None, gt=0, description="Wall-clock time for the whole comparison on this machine, finals included "
        "(seconds, or text: 45m, 1h30m, 900s). Races the methods on the validation split instead of tuning each "
        "exhaustively: cheap rungs first, the significantly worse dropped, the budget spent on the rest "
        "(peftlab run --budget 45m).")
    eta: int = Field(3, ge=2, description="With a budget: each rung trains eta times longer than the one before "
                     "and keeps at most 1/eta of its candidates (successive halving).")

    @model_validator(mode="before")
    @classmethod
    def _race_trials(cls, v: Any) -> Any:
        """A race (`budget`) starts each method with 3 configurations unless told otherwise."""
        if isinstance(v, dict) and v.get("budget") is not None and v.get("trials") is None:
            return {**v, "trials": 3}
        return v

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


class ResourcesConfig(_Strict):
    """What one run asks an executor (`--executor ray`) for. Where, not what: it never changes a
    run's results, and is left out of the run's configuration hash."""

    gpus_per_run: float | None = Field(None, ge=0, description="Default: training.devices GPUs where the cluster "
                                       "has GPUs, else none.")
    cpus_per_run: float | None = Field(None, gt=0, description="Default: training.threads (or 1) per device.")
    memory_mb: float | None = Field(None, gt=0, description="Memory reserved per run (default: the run's estimate).")


class ExperimentConfig(_Strict):
    name: str
    model: ModelConfig
    task: TaskName
    data: DataConfig
    methods: list[MethodEntry] = Field(min_length=1)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tuning: TuningConfig | None = Field(None, description="Tune every method on the same budget before the final "
                                        "runs (peftlab run --tune N).")
    seeds: list[int] | None = Field(None, min_length=1, description="Train each final run once per seed "
                                    "(peftlab run --seeds K); the leaderboard reports the mean and its spread.")
    resources: ResourcesConfig | None = Field(None, description="What one run asks the executor for (--executor ray).")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"seeds must be different, got {v}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("use letters, digits, '.', '_' and '-' only (it becomes a folder name)")
        return v

    @field_validator("model", mode="before")
    @classmethod
    def _model_str(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, v: Any) -> Any:
        """Accept `- lora`, `- {name: lora, r: 16}` or `- {lora: {r: 16}}`; unknown keys go to options."""
        if not isinstance(v, list):
            return v
        out = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, dict) and "name" not in item and len(item) == 1:
                (name, opts), = item.items()
                if not isinstance(opts, dict | None):
                    raise ValueError(f"methods[{i}]: `{name}: {opts}`: a method's options go in a section, e.g. "
                                     f"`- {name}: {{r: 16}}`, or `- {name}` alone for its defaults")
                out.append(_split_entry({"name": name, **(opts or {})}))
            elif isinstance(item, dict):
                out.append(_split_entry(item))
            else:
                out.append(item)
        return out

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        names = [m.run_name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"methods: run names must be unique, {dup} appear twice; give one a `label`")
        for n in names:
            if not NAME_RE.match(n):
                raise ValueError(f"methods: run name {n!r}: use letters, digits, '.', '_' and '-' only")
        d, s = self.data, spec(self.task)
        if d.chat:
            _check_chat(d, self.task)
            return self
        if s.target_key == "target" and not d.target:
            raise ValueError(f"data.target: task {self.task!r} needs the target column (e.g. `target: title`)")
        if s.target_key == "label" and not d.label:
            raise ValueError(f"data.label: task {self.task!r} needs the label column (e.g. `label: label`)")
        if s.image_input and not d.image:
            raise ValueError(f"data.image: task {self.task!r} needs the image column")
        if s.text_input and not (d.input or d.prompt):
            raise ValueError("data: give `input` (the input column) or a `prompt` template with {column} fields "
                             "(or, for chat data, neither: data.format auto reads the conversations)")
        return self


def _check_chat(d: DataConfig, task: str) -> None:
    """Conversations need a decoder-only generative task (the reply continues the rendered chat)
    and, outside `as_chat`, take their columns from the format, not from input/prompt/target."""
    s = spec(task)
    how = "data.as_chat" if d.as_chat else f"data.format {d.format}"
    if not (s.decoder_only and s.generative):
        raise ValueError(f"{how}: conversations need a decoder-only generation task (e.g. causal-lm), not "
                         f"{task!r}; use data.format: columns with input/target (or label) columns")
    if d.as_chat:
        if d.format not in ("columns", "auto"):
            raise ValueError(f"data.as_chat: only with data.format columns (got {d.format}); the chat formats are "
                             "conversations already")
        if not d.target or not (d.input or d.prompt):
            raise ValueError("data.as_chat: give the user turn (`prompt` with {column} fields, or `input`) and the "
                             "assistant turn (`target`)")
        return
    named = [k for k in ("input", "prompt", "target", "label", "image") if getattr(d, k)]
    if named:
        raise ValueError(f"data.{named[0]}: not used with data.format {d.format} (the user turns are the input, "
                         f"the last assistant turn the target); remove it, or use data.format: columns")


def _split_entry(item: dict[str, Any]) -> dict[str, Any]:
    known = {"name", "label", "learning_rate", "options", "search"}
    base = {k: v for k, v in item.items() if k in known}
    extra = {k: v for k, v in item.items() if k not in known}
    if extra:
        base["options"] = {**base.get("options", {}), **extra}
    return base
