"""torch's CPU threads for inference: `--threads` of `peftlab serve` and `peftlab predict`."""

from __future__ import annotations

import contextlib
import os


def serve_threads(threads: int | None) -> int | None:
    """`serve --threads`: as given (0: torch's default, None returned), else half the CPUs, at least 1.
    Measured on 2 shared cores (load ~12), 4 clients x 2 greedy requests of 16 tokens on stories260k:
    1 thread 4.9-7.7 req/s, 2 threads 1.3 req/s, torch's default (2) not done within 60 s."""
    if threads is None:
        return max(1, (os.cpu_count() or 2) // 2)
    return threads or None


def set_threads(threads: int | None) -> None:
    """torch's CPU threads (`--threads` of serve and predict), and the process's inter-op pool when
    no inter-op work has started yet. OpenMP's setting is per thread: torch copies the process's
    into a thread at its first parallel op (so call this before any thread computes); the serving
    engine's thread sets its own."""
    if not threads:
        return
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # inter-op work already started: its pool keeps its size
        torch.set_num_interop_threads(threads)
