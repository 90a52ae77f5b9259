"""The service's settings and the request bodies of the REST API (pydantic models; they make the
OpenAPI schema). Fields reuse the engine's own types: `TaskName` from `peftlab.tasks.spec` and
`MethodEntry` from `peftlab.config.schema`, so a request is checked as an experiment file is.
The JSON shape of a run is `peftlab.queue.jobs.run_summary`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from peftlab.config.schema import MethodEntry
from peftlab.tasks.spec import TASK_NAMES, TaskName


class Settings(BaseModel):
    store: str
    token: str | None = None
    concurrency: int = Field(1, ge=0)  # 0: every queued run (--executor ray: Ray holds those that do not fit)
    max_upload_mb: float = Field(100.0, gt=0)
    start_worker: bool = True
    poll_seconds: float = 1.0
    data_dirs: list[str] = Field(default_factory=list)
    # Host names the service answers to (DNS rebinding): loopback names by default; set with
    # --allowed-host when it is reached by another name (a reverse proxy, a LAN name).
    allowed_hosts: list[str] | None = None
    # Loaded models (bases with their adapters, full fine-tuned runs) beyond this are dropped
    # least-recently-used; the one in use always stays.
    model_memory_mb: float = Field(4096.0, gt=0)
    # The OpenAI-compatible endpoint batches waiting requests of one base model (False: one at a time).
    batching: bool = True
    max_batch: int = Field(16, ge=1)
    # Under load: requests waiting beyond max_queued are refused (429, Retry-After); one is stopped
    # after request_timeout seconds (None: never); on SIGTERM, requests in flight have
    # shutdown_timeout seconds to finish before they are stopped. threads: torch's CPU threads
    # for the models of /v1 and the playground (None: torch's default, one per core).
    max_queued: int = Field(64, ge=1)
    request_timeout: float | None = Field(300.0, gt=0)
    shutdown_timeout: float = Field(5.0, ge=0)
    threads: int | None = Field(None, ge=1)
    # where queued runs execute: worker processes here, or a Ray cluster (`scale.ray_executor`)
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_max_retries: int = Field(2, ge=0)


class PathDataset(BaseModel):
    path: str = Field(description="A data file inside the data folders (absolute, or relative to one).")
    name: str | None = None
    validation: str | None = None
    test: str | None = None


class Mapping(BaseModel):
    input: list[str] | str | None = Field(None, description="Input column(s).")
    prompt: str | None = Field(None, description="Template with {column} placeholders (instead of input).")
    target: str | None = Field(None, description="Target column (generation tasks).")
    label: str | None = Field(None, description="Label column (classification).")
    image: str | None = Field(None, description="Image column: base64, data URL or file path (image tasks).")
    system_prompt: str | None = Field(None, description="System message for chat-template models (with a chat "
                                      "format: for conversations that have none of their own).")


class ExperimentRequest(BaseModel):
    name: str = Field(description="Experiment name: letters, digits, . _ - (it becomes a folder name).")
    model: str = Field(description="A model folder name from /api/models, a path, or a hub id.")
    task: TaskName = TASK_NAMES[0]
    dataset: str | None = Field(None, description="Data set id from /api/datasets.")
    data: dict[str, Any] | None = Field(None, description="Or: the experiment file's `data` section as is.")
    mapping: Mapping | None = Field(None, description="Column mapping (default: the data set's).")
    methods: list[MethodEntry] = Field(min_length=1)
    max_steps: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    max_train_examples: int | None = Field(None, gt=0)
    max_eval_examples: int | None = Field(None, gt=0, description="Limit on test examples.")
    max_validation_examples: int | None = Field(None, gt=0)
    seed: int | None = Field(None, description="training.seed (the first seed with `seeds`).")
    tune: int | None = Field(None, gt=0, le=200, description="Tune every method with this many trials on the same "
                             "budget (tuning.trials) before its final runs; a driver process asks for the trials.")
    budget: str | None = Field(None, description="Race the methods within this time of the machine (45m, 1h30m; "
                               "tuning.budget), the finals included, instead of tuning each exhaustively.")
    seeds: int | None = Field(None, gt=0, le=20, description="Train each final run with this many seeds (seed, "
                              "seed+1, ...); the leaderboard reports their mean and spread.")
    training: dict[str, Any] = Field(default_factory=dict, description="Other `training` keys.")
    evaluation: dict[str, Any] = Field(default_factory=dict, description="`evaluation` keys.")
    force: bool = Field(False, description="Redo runs already done with the same configuration.")
    replace: bool = Field(False, description="Replace finished runs of the same name whose settings changed "
                          "(without it, such a launch is refused with the runs named).")


class PreviewRequest(BaseModel):
    mapping: Mapping | None = Field(None, description="The mapping to preview (default: the data set's).")
    task: TaskName | None = Field(None, description="Default: the data set's suggested task.")
    model: str = Field(description="The model whose tokenizer (and chat template) formats the rows.")
    max_source_length: int = Field(256, gt=0, le=100_000)
    max_target_length: int = Field(64, gt=0, le=100_000)
    system_prompt: str | None = None
    rows: int = Field(3, ge=1, le=20)


class FormatRequest(BaseModel):
    text: str | None = Field(None, description="The input (the value of the input column).")
    inputs: dict[str, Any] | None = Field(None, description="A value per input column, for several.")


class DatasetRename(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="The data set's new name (unique).")


class RenameRequest(BaseModel):
    name: str = Field(description="The new name: letters, digits, . _ -")


class PlaygroundTurn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class PlaygroundRequest(BaseModel):
    experiment: str
    runs: list[str] | None = Field(None, description="Run names (default: every finished run).")
    text: str | None = Field(None, description="The input (the value of the input column).")
    inputs: dict[str, Any] | None = Field(None, description="A value per input column, for several.")
    max_new_tokens: int | None = Field(None, ge=1, le=256)
    # Decoding: greedy as at test time by default; beam search (the evaluation's decoder), or
    # sampling with a temperature and top-p (the serving engine's); the answer's `sampling` says
    # what was applied.
    do_sample: bool | None = None
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    num_beams: int | None = Field(None, ge=1, le=8)
    seed: int | None = Field(None, description="Makes a sampled answer repeatable.")
    messages: dict[str, list[PlaygroundTurn]] | None = Field(
        None, description="A conversation per run (its name): the turns so far, the run's own replies among them, "
                          "ending with the user's. For runs trained on conversations.")


class MergeRequest(BaseModel):
    probes: list[str] | None = Field(None, description="Probe inputs (default: the run's first test inputs).")
    n_probes: int = Field(4, ge=1, le=32)


class GgufRequest(BaseModel):
    quant: list[str] = Field(["f16"], description="llama.cpp types to write: f32, f16, bf16, q8_0, q4_k_m, …")
    n_probes: int = Field(4, ge=1, le=32)


class TicketRequest(BaseModel):
    path: str = Field(description="The download path, e.g. /api/runs/3/adapter.zip")
