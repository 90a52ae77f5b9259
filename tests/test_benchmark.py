"""The speed benchmark's quick mode (slow: run with `python -m pytest -m slow`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_shared

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@needs_shared
def test_quick_benchmark_under_three_minutes_and_faster_than_the_usual_recipe() -> None:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"train_speedup", "eval_speedup", "mfu", "quality_delta"} <= last.keys()
    assert last["train_speedup"] > 1 and last["eval_speedup"] > 1
    assert 0 < last["mfu"] <= 1
    assert wall < 180, f"quick mode took {wall:.0f} s"
