"""The one place a run's task object is made: from the experiment, the tokenizer (or image
processor) and the label names. Training, preflight, reloading a run, the playground and the
merge check all go through `build_task`, so inputs are formatted the same everywhere."""

from __future__ import annotations

from typing import Any

from peftlab.config.schema import ExperimentConfig
from peftlab.tasks.base import Task
from peftlab.tasks.spec import spec


def task_class(task: str) -> type[Task]:
    return spec(task).load_class()


def build_task(cfg: ExperimentConfig, tok: Any, processor: Any, labels: list[str] | None,
               precision: str | None = None) -> Task:
    """The experiment's task object around a loaded tokenizer / image processor. `precision`: what
    it evaluates and answers in, resolved (default: the config's `evaluation.precision`, resolved here)."""
    if precision is None:
        from peftlab.device import resolve_precision

        precision = resolve_precision(cfg.evaluation.precision)
    task = task_class(cfg.task)(tok, processor, cfg.training, cfg.evaluation, labels, cfg.data.system_prompt)
    task.precision = precision
    task.conversational = cfg.data.chat
    return task


def load_task(cfg: ExperimentConfig, rm: Any, labels: list[str] | None, precision: str | None = None) -> Task:
    """Load the tokenizer (and the image processor where the input is an image) of the resolved
    model `rm`, then `build_task`."""
    from peftlab.models import load_image_processor, load_tokenizer

    tok = load_tokenizer(rm, cfg.model, cfg.task)
    processor = load_image_processor(rm, cfg.model) if spec(cfg.task).image_input else None
    return build_task(cfg, tok, processor, labels, precision)
