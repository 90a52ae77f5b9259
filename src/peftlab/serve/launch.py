"""Launching an experiment from the web service: what `POST /api/experiments` does once the
request is a checked plan.

- Untuned: one run per final run (`peftlab.tune.plan.final_runs`: a run per method entry, or
  per entry and seed), queued in the store for the scheduler; each run's outcome is said:
  queued (new, or reset because its settings changed), queued again (failed or interrupted
  before), reused (already done with these settings) or running (another process is on it).
  Finished runs whose settings changed are not replaced unless the request says `replace`.
- Tuned (`tune`): the tuner asks for trials one at a time, so a driver process runs the
  experiment as `peftlab run` does: `python -m peftlab.cli --store STORE run FILE`, detached,
  with the experiment file written under `STORE/launch/`; its trials and final runs appear in
  the store like any others. `driver_state` reports on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from peftlab.queue import jobs
from peftlab.scale.progress import terminal_lines
from peftlab.store import Store, pid_alive
from peftlab.train.plan import Plan, config_hash
from peftlab.train.runs import queue_run
from peftlab.tune.plan import save_plan


def _launch_dir(store: Store) -> Path:
    d = store.root / "launch"
    d.mkdir(parents=True, exist_ok=True)
    return d


# training settings that change nothing for a method that does not train (zero-shot): how long and
# how it would train, how often it would validate or checkpoint
UNTRAINED_IGNORES = ("epochs", "max_steps", "gradient_accumulation_steps", "learning_rate", "weight_decay",
                     "warmup_ratio", "lr_scheduler", "eval_every", "logging_steps", "checkpoint_every",
                     "group_by_length")


def keep_untrained(store: Store, finals: list[tuple[Any, Any, dict[str, Any]]]) -> list[tuple[Any, Any, dict[str, Any]]]:
    """`finals` with the finished run of a method that trains nothing kept as it is when only its
    training budget changed (a relaunch with other max steps does not redo or replace zero-shot):
    that run's config takes the old values of UNTRAINED_IGNORES, so its hash is the old run's."""
    from peftlab.methods import REGISTRY

    out = []
    for entry, cfg, extra in finals:
        m = REGISTRY.get(entry.name)
        old = store.find_run(cfg.name, entry.run_name)
        if m is not None and not m.trains and old is not None and old.status == "done":
            try:
                was = old.config["experiment"]["training"]
                same = cfg.model_copy(update={"training": cfg.training.model_copy(
                    update={k: was[k] for k in UNTRAINED_IGNORES if k in was})})
                if config_hash(same, entry) == old.config_hash:
                    cfg = same
            except (KeyError, TypeError, ValueError):
                pass
        out.append((entry, cfg, extra))
    return out


def replaced_runs(p: Plan, store: Store, finals: list[tuple[Any, Any, dict[str, Any]]]) -> list[str]:
    """Finished runs of the same name whose settings differ: launching would reset them."""
    taken = []
    for entry, cfg, _ in finals:
        old = store.find_run(cfg.name, entry.run_name)
        if old is not None and old.status in ("done", "diverged") and old.config_hash != config_hash(cfg, entry):
            taken.append(old.name)
    return taken


def queue(p: Plan, store: Store, force: bool = False, replace: bool = False) -> dict[str, Any]:
    from peftlab.tune.plan import final_runs

    cfg = p.cfg
    finals = final_runs(p, list(cfg.methods))
    if not force:
        finals = keep_untrained(store, finals)
    taken = [] if (force or replace) else replaced_runs(p, store, finals)
    if taken:
        raise HTTPException(409, f"experiment {cfg.name!r} already has finished runs with other settings: "
                                 f"{', '.join(taken)}. Launching would replace their results: confirm to replace "
                                 "them (replace: true), or give this experiment another name")
    store.save_experiment(cfg.name, cfg.task, cfg.model.path, cfg.model_dump(mode="json"), p.yaml_text,
                          str(p.base_dir) if p.base_dir else None)
    save_plan(store.root, p)
    out, actions = [], {"queued": [], "requeued": [], "reused": [], "running": [], "replaced": []}
    for entry, run_cfg, extra in finals:
        before = store.find_run(cfg.name, entry.run_name)
        run, reset = queue_run(p, store, entry, force, run_cfg, extra)
        if reset:
            store.log(run.id, "queued")
            action = "replaced" if before is not None and before.status in ("done", "diverged") else "queued"
        elif run.status == "queued":
            action = "requeued"
            if before is not None and before.status != "queued":
                store.log(run.id, f"queued again ({before.status} before)")
        elif run.status == "running":
            action = "running"
        else:
            action = "reused"
        actions[action].append(run.name)
        out.append({**jobs.run_summary(run), "action": action})
    return {"experiment": cfg.name, "runs": out, **actions, "yaml": p.yaml_text, "driver": None}


def spawn_driver(p: Plan, store: Store, force: bool = False, replace: bool = False,
                 handoff: bool = False) -> dict[str, Any]:
    """Start `peftlab run` on the experiment in its own process (tuning asks for trials one at a
    time); refused while a driver of the same experiment is alive. `handoff` (the service runs a
    scheduler): the driver queues its runs for the scheduler, whose worker slots then count them
    (`queue.handoff`), instead of training them itself."""
    cfg = p.cfg
    state = driver_state(store, cfg.name)
    if state and state["running"]:
        raise HTTPException(409, f"experiment {cfg.name!r} is being tuned already (driver process {state['pid']}); "
                                 "wait for it or cancel its runs")
    d = _launch_dir(store)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    yaml_path = d / f"{cfg.name}-{stamp}.yaml"
    yaml_path.write_text(p.yaml_text or "", encoding="utf-8")
    log_path = d / f"{cfg.name}-{stamp}.log"
    cmd = [sys.executable, "-m", "peftlab.cli", "--store", str(store.root), "run", str(yaml_path)]
    cmd += ["--force"] if force else []
    cmd += ["--replace"] if replace else []
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    from peftlab.queue.handoff import ENV

    env.pop(ENV, None)
    if handoff:
        env[ENV] = str(os.getpid())
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    info = {"pid": proc.pid, "experiment": cfg.name, "yaml": str(yaml_path), "log": str(log_path),
            "started_at": time.time(), "command": " ".join(cmd[1:])}
    state_file = d / f"{cfg.name}.driver.json"
    state_file.write_text(json.dumps(info), encoding="utf-8")

    def reap() -> None:  # no zombie left; its exit code kept for Jobs
        code = proc.wait()
        try:
            now = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if now.get("pid") == proc.pid:  # not a newer launch's driver
            state_file.write_text(json.dumps({**now, "exit_code": code, "ended_at": time.time()}), encoding="utf-8")

    threading.Thread(target=reap, name=f"driver-{proc.pid}", daemon=True).start()
    store.save_experiment(cfg.name, cfg.task, cfg.model.path, cfg.model_dump(mode="json"), p.yaml_text,
                          str(p.base_dir) if p.base_dir else None)
    save_plan(store.root, p)  # Jobs counts the plan from the start, before the driver made a run
    return {"experiment": cfg.name, "runs": [], "queued": [], "requeued": [], "reused": [], "running": [],
            "replaced": [], "yaml": p.yaml_text, "driver": {**info, "running": True}}


def drivers(store: Store) -> list[dict[str, Any]]:
    """The state of every experiment's last tuning driver (`driver_state`)."""
    d = store.root / "launch"
    names = sorted(f.name[: -len(".driver.json")] for f in d.glob("*.driver.json")) if d.is_dir() else []
    return [s for s in (driver_state(store, n) for n in names) if s is not None]


def driver_state(store: Store, experiment: str, tail: int = 20) -> dict[str, Any] | None:
    f = store.root / "launch" / f"{experiment}.driver.json"
    if not f.is_file():
        return None
    info = json.loads(f.read_text(encoding="utf-8"))
    lines: list[str] = []
    log = Path(info.get("log", ""))
    if log.is_file():
        with open(log, "rb") as fh:
            fh.seek(max(0, log.stat().st_size - 16 * 1024))
            lines = [ln for ln in terminal_lines(fh.read().decode("utf-8", "replace")) if ln.strip()]
    running = pid_alive(info.get("pid"))
    if running:  # a pid the system gave to another process since is not our driver
        try:
            with open(f"/proc/{info['pid']}/cmdline", "rb") as fh:
                running = b"peftlab.cli" in fh.read()
        except OSError:
            pass
    return {**info, "running": running, "log_tail": lines[-tail:], "error": None if running or info.get("exit_code") == 0 else driver_error(lines)}


def driver_error(lines: list[str]) -> str | None:
    """The error a driver ended with, whole: from the CLI's last `error:` line (a PeftlabError's
    message, however long) or the last traceback, to the end of its log."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error: ") or lines[i].startswith("Traceback (most recent call last)"):
            text = "\n".join(lines[i:])
            return text[len("error: "):] if text.startswith("error: ") else text
    return None


def cancel_experiment_runs(store: Store, name: str) -> list[str]:
    """Stop the experiment's tuning driver (it would queue more trials), then cancel every run of
    it that is queued or running (`jobs.cancel`: SIGTERM, checkpoints kept); the names cancelled.
    A run that cannot be cancelled here (JobError: it runs on another machine) stops it, with
    nothing deleted."""
    d = driver_state(store, name)
    if d and d.get("running") and d.get("pid"):
        with contextlib.suppress(OSError):
            os.kill(int(d["pid"]), signal.SIGTERM)
        deadline = time.time() + 15
        while time.time() < deadline and (driver_state(store, name) or {}).get("running"):
            time.sleep(0.2)
    done = []
    for r in store.runs(name):
        if r.status in ("queued", "running"):
            jobs.cancel(store, r.id)
            done.append(r.name)
    return done
