"""The training step: transformers' Trainer with our collator, callbacks and checkpointing.

We use the Trainer for what it does well (optimizer, schedule, autocast, checkpoints with
optimizer/scheduler/RNG state and data position, logging integrations such as TensorBoard
and MLflow) and add three things: dynamic padding with length-grouped batches, a NaN/inf
guard that stops the run at the step it diverged, and a count of real (non-padding) tokens.

A change to what one training step does (its loss, what it counts or guards) goes in
`PeftlabTrainer`; a new Trainer setting from the config goes in `train_model`; a callback that
one method needs goes with that method (`Method.callbacks`), one every run needs in `callbacks.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from peftlab.errors import DivergedError
from peftlab.scale.devices import trainer_args, world_size
from peftlab.tasks.base import Task
from peftlab.train.callbacks import FourBitLayoutCallback, StoreCallback, ValidationMetricCallback
from peftlab.train.context import RunContext


class TokenCountingCollator:
    """Wraps the task's collator and counts real tokens (attention mask ones) and examples."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate
        self.tokens = 0
        self.examples = 0
        self.counting = True  # off while the Trainer evaluates

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(features)
        if not self.counting:
            return batch
        self.examples += len(features)
        if "attention_mask" in batch:
            self.tokens += int(batch["attention_mask"].sum())
        return batch


class EpochSeededLengthSampler(LengthGroupedSampler):
    """transformers' length-grouped sampler, its permutation drawn from `seed + epoch` (the
    Trainer calls `set_epoch` before every epoch, resumed or not)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Any:
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class PeftlabTrainer(Trainer):
    """The Trainer with the task's loss, the method's loss term, a divergence guard, and counts
    of training tokens and validation time.

    `task`: its `loss` replaces the model's own (None: the model's). `extra_loss`: the method's
    term added to the training loss (`Method.extra_loss`). Every other argument is the Trainer's.
    """

    def __init__(self, *args: Any, task: Task | None = None, extra_loss: Callable[[Any, dict[str, Any]], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task = task
        self.extra_loss = extra_loss
        self.validation_seconds = 0.0  # wall time spent in evaluate() in this process
        self.validation_cpu_seconds = 0.0  # and the CPU time (user + sys, every thread) it took
        self.tokens_trained = 0  # real tokens of the batches trained on in this process
        self._extra_logged: list[torch.Tensor] = []  # the method's term per step since the last log

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length-grouped batches in an order fixed by the data seed and the epoch: transformers
        draws that order from the global RNG when the epoch starts, so a run resumed in a later
        epoch (a fresh process, its RNG restored only after the order is drawn) trained on other
        batches than the run it continues, and ended with other metrics."""
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or ds is None or not len(ds):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # grouped by the global batch: a run over several devices trains on the single-device run's batches
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return EpochSeededLengthSampler(global_batch, [len(f["input_ids"]) for f in ds], seed)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Validation (loss, and the main metric through the callbacks): neither its tokens nor
        its time count as training, so train seconds and tokens/s compare across runs that
        validate and runs that do not."""
        collator = self.data_collator
        counting = getattr(collator, "counting", None)
        if counting is not None:
            collator.counting = False
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if not any(isinstance(c, ValidationMetricCallback) for c in self.callback_handler.callbacks):
                return super().evaluate(*args, **kwargs)
            metrics: dict[str, float] = {}  # the callback's one pass fills in eval_loss
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            self.log(metrics)
            return metrics
        finally:
            self.validation_seconds += time.perf_counter() - t0
            self.validation_cpu_seconds += time.process_time() - c0
            if counting is not None:
                collator.counting = counting

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        """The task's loss (causal-lm: logits on the completion only), for training and eval."""
        if self.task is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # summed over num_items_in_batch, the loss is already scaled for gradient accumulation
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        loss = self.task.loss(model, inputs, num_items_in_batch)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            # the count is every process' tokens and DDP averages the gradients: scale back to the sum
            # (the Trainer's own compute_loss does the same), so the step is the single-device run's
            loss = loss * self.args.world_size
        if self.extra_loss is not None and model.training:  # eval losses stay comparable across methods
            extra = self.extra_loss(self.accelerator.unwrap_model(model), inputs)
            if extra is not None:
                ga = self.args.gradient_accumulation_steps if self.loss_is_scaled_for_ga else 1
                loss = loss + extra / ga
                self._extra_logged.append(extra.detach())  # read at log time: no host sync per step
        return (loss, {"loss": loss}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Logs the method's own loss term beside the training loss that includes it
        (`extra_loss`: the mean since the last log), so the task loss can be read off."""
        if "loss" in logs and self._extra_logged:
            logs["extra_loss"] = float(torch.stack(self._extra_logged).float().mean())
            self._extra_logged.clear()
        super().log(logs, *args, **kwargs)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        mask = inputs.get("attention_mask")
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise DivergedError(self.state.global_step + 1, float(loss.detach().float().mean()))
        if mask is not None:
            self.tokens_trained += int(mask.sum())
        return loss


_USER_TB_DIR = os.environ.get("TENSORBOARD_LOGGING_DIR")


@contextlib.contextmanager
def _tensorboard_dir(path: Path | None) -> Iterator[None]:
    """Point the Trainer's TensorBoard callback (which reads the variable when the Trainer is
    built) at this run's folder, not inside checkpoints/; restore it after, so the next run in
    the same process (tests, the serve worker) gets its own folder. A user's setting wins."""
    if path is None or _USER_TB_DIR:
        yield
        return
    before = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = before


@contextlib.contextmanager
def _mlflow_env(store_root: Path, experiment: str, on: bool) -> Iterator[None]:
    """MLflow's records go where the run's other records go: a tracking database in the store
    (`STORE/mlflow.db`) under an MLflow experiment named after the peftlab experiment (the run is
    named after the run, `TrainingArguments.run_name`). Without this, MLflow writes ./mlflow.db in
    whatever folder the run started from, under "Default". The user's MLFLOW_TRACKING_URI and
    MLFLOW_EXPERIMENT_NAME win. The Trainer's MLflow callback reads them when training begins."""
    if not on:
        yield
        return
    set_here = {k: v for k, v in (("MLFLOW_TRACKING_URI", f"sqlite:///{(store_root / 'mlflow.db').resolve()}"),
                                  ("MLFLOW_EXPERIMENT_NAME", experiment)) if not os.environ.get(k)}
    os.environ.update(set_here)
    try:
        yield
    finally:
        for k in set_here:
            os.environ.pop(k, None)


def last_checkpoint(ckpt_dir: Path) -> Path | None:
    if not ckpt_dir.is_dir():
        return None
    found = []
    for d in ckpt_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and _complete(d):
            found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


def _complete(d: Path) -> bool:
    """The Trainer writes trainer_state.json last, and peftlab then adds its counters (tokens and
    seconds so far): a checkpoint cut short by a kill or a full disk lacks one or the other, or
    has a truncated one, and is passed over for the previous one (resuming from it would lose
    the cost of the steps before it)."""
    try:
        json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
        json.loads((d / COUNTERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


COUNTERS_FILE = "peftlab_counters.json"


class CountersCallback(TrainerCallback):
    """Writes the real tokens, train seconds and train CPU seconds so far into each checkpoint,
    so the cost of a run resumed after a kill covers the whole run, not only the part after the
    restart. Also notes what the time was measured under (`measured_under`)."""

    def __init__(self, trainer: PeftlabTrainer, prior: dict[str, float]) -> None:
        # Tokens are counted per training step, not per collated batch: the data loader reads
        # one batch ahead, and that batch is trained again after a restart.
        self.trainer = trainer
        self.prior = prior
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.load_start = os.getloadavg()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.load_start = os.getloadavg()

    def cpu_seconds(self) -> float:
        """CPU time (user + sys, every thread of this process) of training so far, validation left
        out as in the train seconds. Over several devices: this process' own."""
        return self.prior.get("cpu_seconds", 0.0) + time.process_time() - self.c0 - self.trainer.validation_cpu_seconds

    def measured_under(self) -> dict[str, Any]:
        """What the train seconds were measured under: the CPU time they took, the 1-minute load
        average when training started and ended (it counts this run's own threads too), the
        torch threads and the CPUs. A time measured beside other jobs shows a load above the threads."""
        return {"train_cpu_seconds": round(self.cpu_seconds(), 2),
                "load_avg": {"train_start": round(self.load_start[0], 2), "train_end": round(os.getloadavg()[0], 2)},
                "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "resumed": bool(self.prior)}

    def totals(self) -> tuple[float, int]:
        """Train seconds and real tokens so far; over several devices, every process' tokens (a
        collective: every process calls it at the same points, each save and the end)."""
        tokens = self.trainer.tokens_trained
        if self.trainer.args.world_size > 1:
            acc = self.trainer.accelerator
            tokens = int(acc.reduce(torch.tensor(tokens, device=acc.device), reduction="sum"))
        return (self.prior.get("seconds", 0.0) + time.perf_counter() - self.t0 - self.trainer.validation_seconds,
                int(self.prior.get("tokens", 0)) + tokens)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        d = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        seconds, tokens = self.totals()
        if d.is_dir() and state.is_world_process_zero:
            (d / COUNTERS_FILE).write_text(json.dumps({"seconds": seconds, "tokens": tokens,
                                                       "cpu_seconds": self.cpu_seconds()}))


def _prior_counters(resume: Path | None) -> dict[str, float]:
    try:
        return json.loads((resume / COUNTERS_FILE).read_text()) if resume else {}
    except (OSError, ValueError):
        return {}


def default_checkpoint_every(total_steps: int) -> int:
    return max(20, -(-total_steps // 5))


def train_model(
    ctx: RunContext,
    model: Any,
    train_feats: list[dict[str, Any]],
    val_feats: list[dict[str, Any]] | None,
) -> tuple[float, int]:
    """Train `model` in place on the encoded `train_feats` (validating on `val_feats` if given),
    with the run's settings from `ctx`. Returns (train wall seconds, real tokens seen), both for
    the whole run: a resumed run adds what its checkpoint recorded before the restart."""
    cfg, task, method = ctx.cfg, ctx.task, ctx.method
    t = cfg.training
    total_steps = ctx.total_steps
    ckpt_dir = ctx.out_dir / "checkpoints"
    text = "input_ids" in train_feats[0]
    collator = TokenCountingCollator(task.collate)
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=t.batch_size // world_size(),  # the global batch stays batch_size
        per_device_eval_batch_size=cfg.evaluation.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=ctx.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=int(t.warmup_ratio * total_steps),
        lr_scheduler_type=t.lr_scheduler,
        max_steps=total_steps,
        logging_steps=min(t.logging_steps, max(1, total_steps // 2)),
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.checkpoint_every or default_checkpoint_every(total_steps),
        save_total_limit=2,
        eval_strategy="steps" if val_feats else "no",
        eval_steps=t.eval_every,
        bf16=ctx.precision == "bf16",
        fp16=ctx.precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        seed=t.seed,
        data_seed=t.seed,
        report_to=list(t.report_to) or "none",
        run_name=f"{ctx.cfg.name}/{ctx.run_name}",
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if (text and t.group_by_length) else "random",
        dataloader_num_workers=0,
        label_names=["labels"],
        save_only_model=False,
        disable_tqdm=False,
        prediction_loss_only=True,
        **trainer_args(t, method),  # a run over several devices: DDP, FSDP or DeepSpeed
    )
    callbacks: list[Any] = [StoreCallback(ctx.store, ctx.run_id)]
    if getattr(model, "is_loaded_in_4bit", False) or getattr(getattr(model, "base_model", None), "is_loaded_in_4bit", False):
        callbacks.append(FourBitLayoutCallback(model))
    if method.callbacks is not None:
        callbacks.extend(method.callbacks(model))
    if val_feats and ctx.data.validation:
        callbacks.append(ValidationMetricCallback(ctx.store, ctx.run_id, task, ctx.data.validation,
                                                  _pruner(ctx)))
    # a method that needs its own optimizer (LoRA+: lora_B at a multiple of the rate); the Trainer
    # builds the schedule over its parameter groups
    optimizer = (method.make_optimizer(model, ctx.opts, ctx.learning_rate, t.weight_decay)
                 if method.make_optimizer is not None else None)
    with _tensorboard_dir(ctx.out_dir / "tensorboard" if "tensorboard" in t.report_to else None):
        trainer = PeftlabTrainer(
            model=model,
            args=args,
            train_dataset=train_feats,
            eval_dataset=val_feats,
            data_collator=collator,
            callbacks=callbacks,
            task=task,
            extra_loss=method.extra_loss,
            **({"optimizers": (optimizer, None)} if optimizer is not None else {}),
        )
    if world_size() > 1:
        ctx.log(f"training over {world_size()} processes ({args.parallel_mode.name}, "
                f"{args.ddp_backend or 'default backend'}): {args.per_device_train_batch_size} examples each a step")
    resume = last_checkpoint(ckpt_dir)
    if resume is not None:
        ctx.log(f"resuming from {resume.name}")
    counters = CountersCallback(trainer, _prior_counters(resume))
    trainer.add_callback(counters)
    with _mlflow_env(ctx.store.root, ctx.cfg.name, "mlflow" in t.report_to):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    ctx.measured_under = counters.measured_under()
    return counters.totals()


def _pruner(ctx: RunContext) -> Any:
    """A tuning trial's pruning check (`tune.study.pruning_hook`), which also marks the run pruned."""
    if not ctx.trial or ctx.trial.get("pruner", "none") == "none":
        return None
    from peftlab.tune.study import pruning_hook

    hook = pruning_hook(ctx.trial, ctx.store.root)

    def should_stop(step: int, value: float) -> bool:
        if hook(step, value):
            ctx.pruned = True
            return True
        return False

    return should_stop
