"""What one run asks the cluster for, and the runs no node can hold.

Per run (each a Ray task, placed by Ray where its request fits; as many in flight as fit):
- GPUs: `resources.gpus_per_run`, default `training.devices` where the cluster has GPUs, else 0.
- CPUs: `resources.cpus_per_run`, default `training.threads` (or 1) per device. The run's torch
  threads are its CPU share (`training.threads`, else CPUs / devices), so runs side by side on
  one machine never oversubscribe its cores.
- Memory: `resources.memory_mb`, default the run's own estimate (`train.estimate`: weights,
  optimizer state, activations, the framework), so Ray starts no more runs on a node than its
  memory holds.

A request larger than every node (memory, CPUs, GPUs) is refused before any run starts, with the
figures, instead of waiting forever for a node that will never come.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from peftlab.errors import ConfigError


@dataclass(frozen=True)
class Request:
    cpus: float
    gpus: float
    memory_mb: float | None  # None: no memory reserved (no estimate could be made)
    threads: int  # torch threads of each process of the run
    devices: int
    estimated: bool  # memory_mb is the run's estimate (not resources.memory_mb)

    def ray_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.memory_mb:
            opts["memory"] = int(self.memory_mb * 2**20)
        return opts

    def describe(self) -> str:
        mem = f", {self.memory_mb:,.0f} MB" + (" (estimated)" if self.estimated else "") if self.memory_mb else ""
        return f"{self.cpus:g} CPU, {self.gpus:g} GPU{mem}"


@dataclass(frozen=True)
class Node:
    name: str
    cpus: float
    gpus: float
    memory_mb: float


def request_for(experiment: dict[str, Any], estimate_mb: float | None, cluster_gpus: bool) -> Request:
    """The request of a run of `experiment` (its config as the run trains it, a dict)."""
    t = experiment.get("training") or {}
    res = experiment.get("resources") or {}
    devices = int(t.get("devices") or 1)
    gpus = res.get("gpus_per_run")
    gpus = float(devices if cluster_gpus else 0) if gpus is None else float(gpus)
    cpus = res.get("cpus_per_run")
    cpus = float((t.get("threads") or 1) * devices) if cpus is None else float(cpus)
    threads = int(t.get("threads") or max(1, math.floor(cpus / devices)))
    memory = res.get("memory_mb")
    return Request(cpus=cpus, gpus=gpus, memory_mb=float(memory) if memory else estimate_mb, threads=threads,
                   devices=devices, estimated=not memory and estimate_mb is not None)


def check_fits(name: str, req: Request, nodes: list[Node], where: str = "") -> None:
    """Refuse a request no node can hold (it would wait forever), with the largest node's figures."""
    if not nodes:
        raise ConfigError("the Ray cluster has no live node")
    at = f"{where}: " if where else ""
    big_mem = max(nodes, key=lambda n: n.memory_mb)
    if req.memory_mb and req.memory_mb > big_mem.memory_mb:
        how = ("its estimate (peftlab run --dry-run shows it; set resources.memory_mb to reserve less)"
               if req.estimated else "resources.memory_mb")
        raise ConfigError(f"{at}run {name} needs {req.memory_mb:,.0f} MB of memory by {how}, and the largest node "
                          f"of the cluster ({big_mem.name}) has {big_mem.memory_mb:,.0f} MB for tasks; it would "
                          "wait forever: add a larger node, or lower the batch size or max lengths")
    big_cpu = max(nodes, key=lambda n: n.cpus)
    if req.cpus > big_cpu.cpus:
        raise ConfigError(f"{at}run {name} asks for {req.cpus:g} CPUs (resources.cpus_per_run, or training.threads x "
                          f"devices), and the largest node ({big_cpu.name}) has {big_cpu.cpus:g}")
    big_gpu = max(nodes, key=lambda n: n.gpus)
    if req.gpus > big_gpu.gpus:
        raise ConfigError(f"{at}run {name} asks for {req.gpus:g} GPUs (resources.gpus_per_run, or training.devices), "
                          f"and the node with the most ({big_gpu.name}) has {big_gpu.gpus:g}")
    fits = [n for n in nodes if n.cpus >= req.cpus and n.gpus >= req.gpus and (n.memory_mb >= (req.memory_mb or 0))]
    if not fits:
        raise ConfigError(f"{at}run {name} asks for {req.describe()}, and no single node has all of that: "
                          + "; ".join(f"{n.name}: {n.cpus:g} CPU, {n.gpus:g} GPU, {n.memory_mb:,.0f} MB" for n in nodes))


def cluster_nodes(ray: Any) -> list[Node]:
    """The live nodes of the connected cluster and what each offers tasks."""
    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        r = n.get("Resources") or {}
        out.append(Node(name=f"{n.get('NodeManagerHostname', '?')} ({n.get('NodeManagerAddress', '?')})",
                        cpus=float(r.get("CPU", 0)), gpus=float(r.get("GPU", 0)),
                        memory_mb=float(r.get("memory", 0)) / 2**20))
    return out


def estimates(cfg: Any, rm: Any, data: Any, task: Any, cuda: bool) -> dict[str, float]:
    """Estimated memory (MB) of each method of the experiment, by method name (the largest of its
    entries: its seeds and tuning trials ask for that)."""
    from peftlab.train.estimate import estimate

    out: dict[str, float] = {}
    for row in estimate(cfg, rm, data, task, cuda=cuda)["methods"]:
        if row.get("memory_mb"):
            out[row["method"]] = max(out.get(row["method"], 0.0), float(row["memory_mb"]))
    return out
