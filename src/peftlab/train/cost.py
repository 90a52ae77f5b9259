"""Cost measurements: peak memory, parameter counts, sizes on disk."""

from __future__ import annotations

import resource
import threading
from pathlib import Path
from typing import Any

import psutil
import torch

from peftlab.methods.base import parameter_counts as parameter_counts  # re-exported for the recipe


class PeakMemory:
    """Peak resident memory (CPU) or peak allocated memory (CUDA) over a `with` block.

    On CPU a background thread samples the process RSS every 20 ms; the kernel's own
    high-water mark (ru_maxrss) is kept as a cross-check for single-run processes.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak_bytes = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)

    def reset(self) -> None:
        """Start the peak again from now: work done before (the forgetting reference set, made once
        per base by whichever run comes first) does not count in this run's peak."""
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak_bytes = self._proc.memory_info().rss

    @property
    def peak_mb(self) -> float:
        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
        return self.peak_bytes / 2**20

    @staticmethod
    def process_maxrss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
