"""How the CLI executes a run in a worker process of its own, and how it stops it.

`run_subprocess` starts the worker command (`scale.devices.worker_command`: the worker, or the
worker launched once per device by Accelerate), waits for it, and records what a kill or a
crash leaves (the run interrupted, resumable from its last checkpoint); SIGTERM to the driver
stops the worker like Ctrl-C (`sigterm_as_interrupt`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from peftlab.store import Store


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a KeyboardInterrupt so every Ctrl-C path handles it."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, a scheduler stopping the job) stops a run like Ctrl-C: the run is marked
    interrupted and resumes from its last checkpoint next time."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_subprocess(store: Store, run_id: int, command: list[str]) -> str:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    proc = subprocess.Popen(command, env=env)
    store.release(run_id, proc.pid)
    try:
        code = proc.wait()
    except KeyboardInterrupt as e:
        # Ctrl-C in a terminal reaches the worker too (same process group) and it stops itself;
        # a SIGTERM sent to this process alone does not, so pass it on.
        try:
            if isinstance(e, Terminated):
                proc.terminate()
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        store.mark_interrupted(run_id, "stopped by the user (Ctrl-C or SIGTERM); run again to resume")
        raise
    run = store.run(run_id)
    if run is not None and run.status == "running":
        why = "killed (out of memory?)" if code in (-9, 137) else f"exited with code {code}"
        store.mark_interrupted(
            run_id, f"worker process {why} before finishing; run again to resume from the last checkpoint"
        )
        return "interrupted"
    return run.status if run else "failed"
