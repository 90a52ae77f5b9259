"""The plan of an experiment: its file, validated, with the methods and seeds a command names,
and what makes one of its runs the same run (`config_hash`).

The plan is made once, where a command starts (`peftlab run`, the service's launch); the tuner,
the race, the executors and the runs it makes take it as given (`train.runs`), and never read
the experiment file again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.config import ExperimentConfig, LoadedExperiment, load_experiment
from peftlab.config.load import line_index
from peftlab.config.schema import MethodEntry
from peftlab.errors import ConfigError, MethodNotApplicable
from peftlab.methods import REGISTRY, Method, get_method, validate_method
from peftlab.tasks.spec import TaskSpec, spec


@dataclass
class Plan:
    """An experiment to run: its config (the selected methods), the folder its relative paths
    start from, its YAML text (kept with the experiment in the store) and where its keys are;
    and, resolved once here, its task and each entry's method, which the tuner, the race, the
    preflight and the executors take from the plan instead of looking the names up again."""

    cfg: ExperimentConfig
    base_dir: Path | None
    yaml_text: str | None
    path: Path | None = None  # the experiment file, for messages
    loaded: LoadedExperiment | None = None  # the loader's result: the lines of the file's keys
    # `--methods all`: methods that do not fit this model are left out in preflight (with a note)
    # instead of failing the experiment
    every_method: bool = False
    task: TaskSpec = field(init=False)
    methods: dict[str, Method] = field(init=False)  # by method name

    def __post_init__(self) -> None:
        if self.loaded is None and self.yaml_text:  # built without the loader (the web API's experiments)
            source = str(self.path) if self.path else "experiment"
            self.loaded = LoadedExperiment(self.cfg, source, line_index(self.yaml_text), self.yaml_text)
        self.task = spec(self.cfg.task)
        self.methods = {e.name: get_method(e.name) for e in self.cfg.methods}

    def method(self, entry: MethodEntry) -> Method:
        """The entry's method (a tuned or raced copy of an entry keeps its method's name)."""
        return self.methods[entry.name]

    def trained(self) -> list[MethodEntry]:
        """The entries whose method trains: not the zero-shot row."""
        return [e for e in self.cfg.methods if self.method(e).trains]

    def where(self, key: str) -> str:
        """`file:line` of a key of the experiment file, for a message about it."""
        if self.path is None or self.loaded is None:
            return str(self.path or "experiment")
        return self.loaded.where(key)

    def method_where(self, run_name: str) -> str:
        """`file:line` of a `methods` entry, for a message about it."""
        return self.loaded.method_where(run_name) if self.loaded else str(self.path or "experiment")


def config_hash(cfg: ExperimentConfig, entry: MethodEntry) -> str:
    """What makes a run the same run: the experiment (less the other methods, and less tuning and
    seeds, which decide which runs exist, not what one run does) and its method entry (less its
    search space). A changed hash resets the run. Keys added since (data.format, data.as_chat,
    evaluation.precision, evaluation.forgetting...) count only when set off their defaults: the runs of existing stores keep their hashes."""
    body = cfg.model_dump(mode="json", exclude={"methods", "tuning", "seeds", "resources"})  # resources: where, not what
    for section, key, default in (("data", "format", "auto"), ("data", "as_chat", False),
                                  ("training", "devices", 1), ("training", "strategy", "auto"),
                                  ("evaluation", "precision", "fp32"), ("evaluation", "forgetting", True)):
        if body[section].get(key) == default:
            del body[section][key]
    blob = json.dumps({"experiment": body, "entry": entry.model_dump(mode="json", exclude={"search"})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def select_methods(cfg: ExperimentConfig, names: list[str] | None) -> list[MethodEntry]:
    """The entries `--methods` names: runs of the file, methods by name (with their defaults), or
    `all`: every method that applies to the task (the file's own entries first, as written)."""
    if not names:
        return list(cfg.methods)
    if names == ["all"]:
        out = list(cfg.methods)
        for name in REGISTRY:
            if any(m.name == name for m in out):
                continue
            try:
                validate_method(name, {}, cfg.task, cfg.evaluation.num_beams)
            except (ConfigError, MethodNotApplicable):
                continue
            out.append(MethodEntry(name=name))
        return out
    by_name = {m.run_name: m for m in cfg.methods}
    out: list[MethodEntry] = []
    for n in names:
        hits = [m for m in cfg.methods if m.run_name == n or m.name == n]
        if not hits:
            if n in REGISTRY:  # a method not listed in the file: run it with its defaults
                hits = [MethodEntry(name=n)]
            else:
                raise ConfigError(
                    f"--methods: {n!r} is neither a run in this experiment ({', '.join(by_name)}) "
                    f"nor a known method ({', '.join(REGISTRY)})"
                )
        out += [h for h in hits if h not in out]
    return out


def plan(path: str | Path, overrides: dict[str, Any] | None = None, methods: list[str] | None = None,
         seeds: int | None = None, origins: dict[str, str] | None = None) -> Plan:
    """The experiment file, validated, with `overrides` (dotted keys; `origins`: the flag that gave
    each, for messages), only the `methods` named, and `seeds` (`--seeds K`: training.seed, +1, ...
    +K-1) in place of its `seeds:`."""
    path = Path(path)
    loaded = load_experiment(path, overrides, origins)
    selected = select_methods(loaded.cfg, methods)
    update: dict[str, Any] = {"methods": selected}
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds {seeds}: give the number of seeds to train each final run with, 1 or more")
        update["seeds"] = [loaded.cfg.training.seed + i for i in range(seeds)]
    cfg = loaded.cfg.model_copy(update=update)
    every = methods == ["all"]
    for m in selected:
        validate_method(m.name, m.options, cfg.task, cfg.evaluation.num_beams)
    return Plan(cfg, path.parent.resolve(), loaded.text, path, loaded, every_method=every)
