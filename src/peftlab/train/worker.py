"""Worker process entry point: `python -m peftlab.train.worker STORE RUN_ID`.

Each run executes in its own process so that its peak memory is its own, a crash or an
out-of-memory kill cannot take other runs down, and SIGKILL leaves a resumable checkpoint.
"""

from __future__ import annotations

import signal
import sys

from peftlab.store import Store
from peftlab.train.recipe import execute_run


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m peftlab.train.worker STORE RUN_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    store = Store(argv[0])
    try:
        status = execute_run(store, int(argv[1]))
    except KeyboardInterrupt:
        return 130
    return 0 if status in ("done", "failed", "diverged") else 1


if __name__ == "__main__":
    sys.exit(main())
