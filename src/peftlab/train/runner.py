"""Run an experiment: validate everything up front, then run each method in turn.

Methods already done with the same configuration are skipped (unless `force`); a run that
was interrupted resumes from its last checkpoint; a run another process is working on is
left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.config import ExperimentConfig, load_experiment
from peftlab.config.schema import MethodEntry
from peftlab.data.prepare import prepare_data
from peftlab.errors import ConfigError
from peftlab.models import resolve_model
from peftlab.store import Run, Store


@dataclass
class Plan:
    cfg: ExperimentConfig
    base_dir: Path | None
    yaml_text: str | None


def config_hash(cfg: ExperimentConfig, entry: MethodEntry) -> str:
    body = cfg.model_dump(mode="json", exclude={"methods"})
    blob = json.dumps({"experiment": body, "entry": entry.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def select_methods(cfg: ExperimentConfig, names: list[str] | None) -> list[MethodEntry]:
    if not names:
        return list(cfg.methods)
    by_name = {m.run_name: m for m in cfg.methods}
    out: list[MethodEntry] = []
    for n in names:
        hits = [m for m in cfg.methods if m.run_name == n or m.name == n]
        if not hits:
            from peftlab.methods import REGISTRY

            if n in REGISTRY:  # a method not listed in the file: run it with its defaults
                hits = [MethodEntry(name=n)]
            else:
                raise ConfigError(
                    f"--methods: {n!r} is neither a run in this experiment ({', '.join(by_name)}) "
                    f"nor a known method ({', '.join(REGISTRY)})"
                )
        out += [h for h in hits if h not in out]
    return out


def plan(path: str | Path, overrides: dict[str, Any] | None = None, methods: list[str] | None = None) -> Plan:
    path = Path(path)
    cfg = load_experiment(path, overrides)
    selected = select_methods(cfg, methods)
    cfg = cfg.model_copy(update={"methods": selected})
    from peftlab.methods import validate_entry

    for m in selected:
        validate_entry(m, cfg.task)
    return Plan(cfg, path.parent.resolve(), path.read_text(encoding="utf-8"))


def preflight(p: Plan) -> None:
    """Check data and model before any run starts (errors name the file/line/key)."""
    prepare_data(p.cfg.data, p.cfg.task, p.cfg.training.seed, p.base_dir)
    resolve_model(p.cfg.model, p.base_dir)


def run_experiment(
    p: Plan,
    store: Store,
    force: bool = False,
    isolation: str = "subprocess",
    echo: Any = print,
) -> list[Run]:
    cfg = p.cfg
    preflight(p)
    store.save_experiment(cfg.name, cfg.task, cfg.model.path, cfg.model_dump(mode="json"), p.yaml_text,
                          str(p.base_dir) if p.base_dir else None)
    store.reap_stale()
    results: list[Run] = []
    for i, entry in enumerate(cfg.methods, start=1):
        head = f"[{i}/{len(cfg.methods)}] {cfg.name} / {entry.run_name}"
        run_cfg = {
            "experiment": cfg.model_dump(mode="json"),
            "entry": entry.model_dump(mode="json"),
            "base_dir": str(p.base_dir) if p.base_dir else None,
        }
        run, _ = store.upsert_run(cfg.name, entry.run_name, entry.name, config_hash(cfg, entry), run_cfg, force)
        if run.status in ("done", "diverged"):
            echo(f"{head}: already {run.status}, skipped (use --force to redo)")
            results.append(run)
            continue
        if not store.claim(run.id):
            echo(f"{head}: being run by another process (pid {run.pid}), skipped")
            results.append(run)
            continue
        resumed = " (resuming)" if run.status == "interrupted" else ""
        echo(f"{head}: running{resumed}")
        status = _execute(store, run.id, isolation)
        final = store.run(run.id)
        assert final is not None
        echo(f"{head}: {status}" + (f" - {final.error}" if final.error and status != "done" else ""))
        results.append(final)
    return results


def _execute(store: Store, run_id: int, isolation: str) -> str:
    if isolation == "inprocess":
        from peftlab.train.recipe import execute_run

        return execute_run(store, run_id)
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    proc = subprocess.Popen([sys.executable, "-m", "peftlab.train.worker", str(store.root), str(run_id)], env=env)
    store.release(run_id, proc.pid)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.wait()
        raise
    run = store.run(run_id)
    if run is not None and run.status == "running":
        why = "killed (out of memory?)" if code in (-9, 137) else f"exited with code {code}"
        store.update(run_id, status="interrupted", pid=None,
                     error=f"worker process {why} before finishing; run again to resume from the last checkpoint")
        return "interrupted"
    return run.status if run else "failed"
