"""One run's state, in one object that the recipe's steps share (torchtune keeps the same state
on its recipe's `self`).

`recipe.execute_run` makes it from the run's record; each step of `recipe._run` fills in what it
resolves (method, data, task, steps, learning rate) and the later steps and the trainer read it.
A value that a new step needs from an earlier one goes here, not into another parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.config.schema import ExperimentConfig, MethodEntry
from peftlab.data.prepare import PreparedData
from peftlab.methods import Method, MethodOptions
from peftlab.store import Store
from peftlab.tasks.base import Task
from peftlab.train.cost import PeakMemory


@dataclass
class RunContext:
    # what the run is: from its record in the store
    store: Store
    run_id: int
    cfg: ExperimentConfig
    entry: MethodEntry
    base_dir: Path | None  # where the experiment's relative paths start
    out_dir: Path  # the run's folder: checkpoints, artifact, predictions
    mem: PeakMemory = field(default_factory=PeakMemory)  # peak memory over the run (`with ctx.mem`)
    # "final" (a leaderboard run, tested on the test split) or "trial" (a tuning trial: scored on
    # the validation split; the test split is never read, and no artifact is kept)
    role: str = "final"
    # seed of the data's sampling and splits: the experiment's own seed for every seed of a run,
    # so the runs of a variant differ in their training seed only and share their test examples
    data_seed: int | None = None
    trial: dict[str, Any] | None = None  # a trial's study, number and pruner (`tune/`)
    pruned: bool = False  # a trial its pruner stopped early
    # what training's time was measured under (CPU time, load average, threads): `CountersCallback.measured_under`
    measured_under: dict[str, Any] = field(default_factory=dict)
    # resolved by the recipe's steps, in this order
    method: Method = field(init=False)
    opts: MethodOptions = field(init=False)
    precision: str = field(init=False)  # fp32 / bf16 / fp16, from training.precision and the device
    eval_precision: str = field(init=False)  # what the run answers in: evaluation.precision (default fp32)
    data: PreparedData = field(init=False)  # step 1
    task: Task = field(init=False)  # step 2
    total_steps: int = field(init=False)  # step 3
    learning_rate: float = field(init=False)  # step 4

    @property
    def run_name(self) -> str:
        return self.entry.run_name

    @property
    def is_trial(self) -> bool:
        return self.role == "trial"

    def phase(self, name: str) -> None:
        """Show the run's current phase (`peftlab show`, the web UI)."""
        self.store.update(self.run_id, progress={"phase": name})

    def update(self, **fields: Any) -> None:
        self.store.update(self.run_id, **fields)

    def log(self, message: str, level: str = "info") -> None:
        self.store.log(self.run_id, message, level)
