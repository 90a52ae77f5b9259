"""Trainer callbacks: write curves and progress to the store, score validation as training goes.

Callbacks a single method needs live with that method (`Method.callbacks`)."""

from __future__ import annotations

import math
import time
from typing import Any

from transformers import TrainerCallback

from peftlab.store import Store


class StoreCallback(TrainerCallback):
    """Logs train loss, learning rate, eval loss and progress (step, ETA) for each run."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self.t0 = time.time()
        self.start_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.t0 = time.time()
        self.start_step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if not logs:
            return
        keep = {"loss": "train_loss", "eval_loss": "eval_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
                "extra_loss": "train_extra_loss"}  # the method's term inside train_loss (AdaLoRA's penalty)
        values = {keep[k]: v for k, v in logs.items() if k in keep and isinstance(v, int | float) and math.isfinite(v)}
        if values:
            self.store.log_points(self.run_id, state.global_step, values)
        done = state.global_step - self.start_step
        elapsed = time.time() - self.t0
        left = state.max_steps - state.global_step
        eta = elapsed / done * left if done > 0 else None
        self.store.update(
            self.run_id,
            progress={
                "phase": "train",
                "step": state.global_step,
                "max_steps": state.max_steps,
                "loss": logs.get("loss"),
                "eta_seconds": round(eta, 1) if eta is not None else None,
            },
        )


class ValidationMetricCallback(TrainerCallback):
    """At each evaluation, score the validation set with the task's main metric (generating text
    for generation tasks), so the report can plot quality over steps, and its loss: one pass of
    the task's `evaluate`, whose loss the trainer logs as eval_loss (`PeftlabTrainer.evaluate`
    runs no loss loop of its own beside it)."""

    def __init__(self, store: Store, run_id: int, task: Any, examples: list[Any],
                 should_stop: Any = None) -> None:
        self.store = store
        self.run_id = run_id
        self.task = task
        self.examples = examples
        # (step, value) -> bool: a tuning trial's pruner, told each validation score
        self.should_stop = should_stop

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, metrics: dict[str, float] | None = None,
                    **kw: Any) -> None:
        if model is None or not self.examples:
            return
        loss, preds = self.task.evaluate(model, self.examples, desc="validation")
        if metrics is not None:
            metrics.setdefault("eval_loss", loss)
        scores = self.task.score(self.examples, preds)
        main = self.task.main_metric
        if isinstance(scores.get(main), int | float):
            self.store.log_points(self.run_id, state.global_step, {f"val_{main}": float(scores[main])})
            if self.should_stop is not None and self.should_stop(state.global_step, float(scores[main])):
                self.store.log(self.run_id, f"pruned at step {state.global_step} (validation {main} "
                               f"{float(scores[main]):.2f} below the median of earlier trials)")
                control.should_training_stop = True


class FourBitLayoutCallback(TrainerCallback):
    """A 4-bit base's layers back in their training layout before each step (`quantize.restore_training_layout`)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from peftlab.methods.quantize import restore_training_layout

        restore_training_layout(self.model)
