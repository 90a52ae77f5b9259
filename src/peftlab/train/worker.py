"""Worker process entry point: `python -m peftlab.train.worker STORE RUN_ID`.

Each run executes in its own process so that its peak memory is its own, a crash or an
out-of-memory kill cannot take other runs down, and SIGKILL leaves a resumable checkpoint.

A run over several devices is this worker launched once per device (`scale.devices`): the
first process records, the others open the store as followers. On a Ray worker the store is
the task's private one, recorded as events (`scale.events`), and the worker exits when the
Ray task that launched it is gone ($PEFTLAB_PARENT_PID).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from peftlab.scale.devices import set_device
from peftlab.scale.events import worker_store
from peftlab.store import pid_alive
from peftlab.train.recipe import execute_run


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m peftlab.train.worker STORE RUN_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    _exit_with_parent()
    set_device()
    store = worker_store(argv[0])
    try:
        status = execute_run(store, int(argv[1]))
    except KeyboardInterrupt:
        return 130
    return 0 if status in ("done", "failed", "diverged") else 1


def _exit_with_parent() -> None:
    """Stop when the process named by $PEFTLAB_PARENT_PID is gone (a Ray task killed with its
    worker leaves no run behind it)."""
    parent = int(os.environ.get("PEFTLAB_PARENT_PID") or 0)
    if not parent:
        return

    def watch() -> None:
        while pid_alive(parent):
            time.sleep(1.0)
        os._exit(137)

    threading.Thread(target=watch, name="peftlab-parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
