"""One run over several devices: what is refused before any run starts, how the run is launched,
and the Trainer settings of each strategy.

- `training.devices: N` launches the run's worker as N processes with `accelerate launch`
  (torch.distributed underneath): one per GPU. On a machine without GPUs, N CPU processes over
  gloo, but only when asked for explicitly with `strategy: ddp`: processes on one CPU share its
  cores, so they are devices only for testing a setup (or on a many-core machine), never by
  default.
- The global batch stays `training.batch_size`: each of the N processes trains on batch_size / N
  examples a step, and the length-grouped sampler orders the data by the global batch, so a run
  over N devices trains on the same batches, in the same order, as the run on one, and their
  curves compare (the loss is summed over the tokens of all processes, then divided by their
  total, as on one device).
- `strategy: auto`: FSDP for full fine-tuning on GPUs (weights, gradients and optimizer state
  sharded over the devices), DDP for the PEFT methods (their trainable parameters are small:
  each process keeps the whole frozen model). `deepspeed-zero3` needs DeepSpeed installed.
- Only the first process records (the others open the store as a `FollowerStore`): it writes
  the curves, checkpoints (the Trainer's, with each process' RNG state) and, after training,
  saves, evaluates and scores alone while the others exit.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftlab.errors import ConfigError

if TYPE_CHECKING:
    from peftlab.train.plan import Plan


def rank() -> int:
    """This process' rank in a run over several devices (0: the first, or the only one)."""
    return int(os.environ.get("RANK") or 0)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE") or 1)


def strategy(training: Any, method: Any, cuda: bool) -> str:
    """The strategy a run over several devices uses: `training.strategy`, or for auto FSDP for
    full fine-tuning on GPUs and DDP otherwise."""
    if training.strategy != "auto":
        return training.strategy
    return "fsdp" if cuda and method.is_full else "ddp"


def check_devices(p: Plan, gpus: int, cpus: int, machine: str = "this machine") -> None:
    """Refuse, before any run starts, a `training.devices`/`strategy` that cannot run on a machine
    with `gpus` GPUs and `cpus` cores (the largest node of a cluster), or that does not fit a method."""
    cfg = p.cfg
    t = cfg.training
    if t.devices == 1:
        return
    where = p.where("training.devices")
    if t.batch_size % t.devices:
        raise ConfigError(f"{where}: training.batch_size {t.batch_size} does not split over {t.devices} devices "
                          f"(each trains on batch_size / devices examples a step, so the global batch stays the "
                          f"single-device run's): use a batch size divisible by {t.devices}")
    if gpus == 0:
        if t.strategy in ("fsdp", "deepspeed-zero3"):
            raise ConfigError(f"{p.where('training.strategy')}: training.strategy {t.strategy} needs GPUs and "
                              f"{machine} has none; on CPUs use strategy: ddp")
        if t.strategy != "ddp":
            raise ConfigError(f"{where}: training.devices is {t.devices} but {machine} has no GPU. To train one "
                              f"run as {t.devices} CPU processes (DDP over gloo), say so: training.strategy: ddp")
        if t.devices > cpus:
            raise ConfigError(f"{where}: training.devices is {t.devices} CPU processes but {machine} has {cpus} "
                              "cores; lower training.devices")
    elif t.devices > gpus:
        raise ConfigError(f"{where}: training.devices is {t.devices} but {machine} has {gpus} GPU(s); lower "
                          "training.devices, or run on a machine (or cluster node) with more")
    if cfg.tuning is not None and cfg.tuning.pruner != "none":
        raise ConfigError(f"{p.where('tuning')}: tuning.pruner {cfg.tuning.pruner} with training.devices "
                          f"{t.devices}: pruning a trial that trains over several processes is not supported; use "
                          "pruner: none, or train on one device")
    for entry in cfg.methods:
        method = p.method(entry)
        s = strategy(t, method, gpus > 0)
        at = p.method_where(entry.run_name)
        if s in ("fsdp", "deepspeed-zero3") and method.quantized(method.parse_options(entry.options)):
            raise ConfigError(f"{at}: methods: {entry.run_name} ({entry.name}) trains on a 4-bit base, which "
                              f"{s} cannot shard; use training.strategy: ddp for it (or another method)")
        if s == "deepspeed-zero3" and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"{p.where('training.strategy')}: training.strategy deepspeed-zero3 needs DeepSpeed: "
                              "pip install deepspeed (or use strategy: fsdp)")


def local_devices() -> tuple[int, int]:
    """(GPUs, CPU cores) of this machine."""
    import torch

    return (torch.cuda.device_count() if torch.cuda.is_available() else 0), (os.cpu_count() or 1)


def trainer_args(training: Any, method: Any) -> dict[str, Any]:
    """TrainingArguments of this process' part of a run over several devices ({} on one)."""
    import torch

    if world_size() == 1:
        return {}
    cuda = torch.cuda.is_available()
    s = strategy(training, method, cuda)
    if s == "fsdp":
        return {"fsdp": "full_shard auto_wrap"}
    if s == "deepspeed-zero3":
        return {"deepspeed": {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": "auto",
                              "gradient_accumulation_steps": "auto", "train_batch_size": "auto"}}
    return {"ddp_backend": "nccl" if cuda else "gloo"}


def worker_command(store_root: Path, run_id: int, devices: int) -> list[str]:
    """The command that executes one run: the worker process, or with several devices that
    worker launched once per device by `accelerate launch` (a free port each, so runs side by
    side do not collide)."""
    worker = ["-m", "peftlab.train.worker", str(store_root), str(run_id)]
    if devices == 1:
        return [sys.executable, *worker]
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(devices), "--num_machines", "1",
            "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", *worker]


def set_device() -> None:
    """A process of a run over several GPUs works on its own GPU (before the model is loaded)."""
    import torch

    if world_size() > 1 and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK") or 0))
