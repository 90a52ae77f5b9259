"""A tuning driver launched by the web service hands its runs to the service's scheduler
instead of training them itself.

The service counts its worker slots (`--concurrency`) over the runs its scheduler starts. A
driver that trained its trials in processes of its own ran beside the scheduler's runs, so
`--concurrency 1` ran two trainings at once. The service now starts its driver with
`PEFTLAB_HANDOFF=<the service's pid>`; the driver's runs (`isolation="queue"`) are then queued in
the store like any other run and wait their turn for a worker slot, and the driver waits for
each to end. Should the service stop meanwhile, the driver stops too, with a message (its runs
stay queued and resume when the experiment is launched again).
"""

from __future__ import annotations

import os
import time
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.store import Store, pid_alive

ENV = "PEFTLAB_HANDOFF"
ENDED = ("done", "failed", "diverged", "interrupted")


def service_pid() -> int | None:
    """The pid of the service whose scheduler runs this driver's runs; None outside one."""
    try:
        return int(os.environ.get(ENV, "")) or None
    except ValueError:
        return None


def wait_for(store: Store, run_ids: list[int], poll: float = 0.5, echo: Any = None) -> dict[int, str]:
    """Wait until every run has ended; their statuses. Raises PeftlabError if the service that
    runs them stops first."""
    pid = service_pid()
    left = set(run_ids)
    out: dict[int, str] = {}
    while left:
        for rid in sorted(left):
            run = store.run(rid)
            if run is None:
                out[rid] = "failed"  # deleted meanwhile
            elif run.status in ENDED:
                out[rid] = run.status
        left -= set(out)
        if not left:
            break
        if pid is not None and not pid_alive(pid):
            raise PeftlabError(f"the web service (pid {pid}) that runs this experiment's runs stopped; its queued "
                               "runs wait for the next start, and launching the experiment again resumes the tuning")
        time.sleep(poll)
    return out
