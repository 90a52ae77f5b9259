"""Load a finished run back for inference: the base model plus its saved adapter (or the
fully fine-tuned model), and the task object that formats inputs exactly as in training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from peftlab.config.schema import ExperimentConfig, MethodEntry
from peftlab.data.prepare import prepare_data
from peftlab.errors import PeftlabError
from peftlab.methods import MethodContext, get_method
from peftlab.methods.common import try_merge
from peftlab.models.loading import load_model, resolve_model
from peftlab.store import Run
from peftlab.tasks.base import Task
from peftlab.tasks.build import load_task
from peftlab.tasks.spec import spec


@dataclass
class Trained:
    model: Any
    task: Task
    cfg: ExperimentConfig
    entry: MethodEntry


def run_config(run: Run) -> tuple[ExperimentConfig, MethodEntry, Path | None]:
    cfg = ExperimentConfig.model_validate(run.config["experiment"])
    entry = MethodEntry.model_validate(run.config["entry"])
    base = Path(run.config["base_dir"]) if run.config.get("base_dir") else None
    return cfg, entry, base


def answer_precision(run: Run) -> str:
    """The precision every answer of `run` is computed in, on every path (its test evaluation,
    predict, the playground, /v1): the one its evaluation used, recorded with it. Runs made before
    `evaluation.precision` (issue 26) evaluated at their training precision, recorded as `precision`."""
    from peftlab.device import resolve_precision

    r = run.resolved or {}
    if r.get("eval_precision"):
        return str(r["eval_precision"])
    if r.get("precision"):
        return str(r["precision"])
    return resolve_precision(run_config(run)[0].evaluation.precision)


def run_task(cfg: ExperimentConfig, base: Path | None, labels: list[str] | None = None,
             precision: str | None = None) -> tuple[Task, Any]:
    """The task object (tokenizer, formatter) for a run's experiment, and the resolved model.
    Labels come from the run's record; older runs without them read the data once. `precision`:
    what the task computes in (`answer_precision` of the run)."""
    rm = resolve_model(cfg.model, base)
    if labels is None and spec(cfg.task).target_key == "label":
        labels = prepare_data(cfg.data, cfg.task, cfg.training.seed, base).labels
    return load_task(cfg, rm, labels, precision), rm


def for_inference(model: Any) -> Any:
    """On the GPU when there is one, where training evaluated it, so outputs match (a 4-bit
    base is placed as it loads and cannot move), in eval mode."""
    if torch.cuda.is_available() and not getattr(model, "is_quantized", False):
        model.to("cuda")
    return model.eval()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The global torch RNG seeded as a run's training seeded it before loading its model
    (`peftlab.train.recipe`: nothing draws from it in between), so a classifier head the
    checkpoint lacks is initialised as the run's was (the zero-shot row evaluated that head);
    restored afterwards, so a model load does not reset a service's sampling."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_trained(run: Run) -> Trained:
    """Base model + adapter of a done run (zero-shot: the base model alone)."""
    if run.status != "done":
        raise PeftlabError(f"run {run.name!r} is {run.status}, not done; nothing to load")
    cfg, entry, base = run_config(run)
    labels = (run.info or {}).get("labels")
    task, rm = run_task(cfg, base, labels, answer_precision(run))
    method = get_method(entry.name)
    art = run.file("artifact")
    artifact = str(art) if art is not None else None
    if method.is_full:
        from peftlab.config.schema import ModelConfig

        model = load_model(resolve_model(ModelConfig(path=artifact), None), cfg.model, cfg.task, labels)
        task.prepare_model(model)
    else:
        extra: dict[str, Any] = {}
        if method.load_kwargs is not None:
            opts = method.parse_options(entry.options)
            trained_in = (run.resolved or {}).get("precision") or task.precision  # a 4-bit base computes as it trained
            ctx = MethodContext(task=cfg.task, model_type="", total_steps=1, precision=trained_in)
            extra = method.load_kwargs(opts, ctx)
        with seeded(cfg.training.seed):
            model = load_model(rm, cfg.model, cfg.task, labels, **extra)
        task.prepare_model(model)
        if artifact:
            import warnings

            from peft import PeftModel

            with warnings.catch_warnings():  # peft's own read of a deprecated attribute (see methods.common.wrap)
                warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                        category=FutureWarning)
                model = PeftModel.from_pretrained(model, artifact)
            try_merge(model)  # inference as the run's test evaluation did it: adapter folded in where it can be
    return Trained(for_inference(model), task, cfg, entry)
