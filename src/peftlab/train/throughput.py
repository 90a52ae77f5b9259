"""This machine's speed, for time estimates made before the store has measured any run.

A fresh store has no finished run to time a plan from, and machines differ by ten times and more:
two AVX2 cores against many AMX cores, and bf16, four to five times fp32 where the CPU has it
natively, is tens of times slower where it is emulated. An assumed constant cannot be right on
both, so the estimate times a matrix multiply of the model's own width at the run's precision here
(a fraction of a second, once per process) and scales it by the share of that rate whole runs reach
(`TRAIN_EFFICIENCY`, `EVAL_EFFICIENCY`: measured, see their comments).

On a CPU the multiply runs on one thread and is timed in that thread's CPU time, then multiplied by
the threads a run uses: CPU time does not grow when other jobs share the machine, so the estimate
is the time on the machine alone, whatever runs beside the estimate.
"""

from __future__ import annotations

import functools
import os
import time

import torch

# Share of the multiply's rate (one thread's, times the run's threads) that whole runs reach, FLOPs
# counted as train/estimate.py counts them (training: tokens x 6P for full fine-tuning, 4P for PEFT,
# P counting embeddings too, hence a share above 1; evaluation: examples x tokens x 2P). Measured
# on a 2-core AMD EPYC (AVX2, fp32, the multiply at 55 GFLOP/s per thread) with all-MiniLM-L6-v2
# on financial_phrasebank: the medians over the 20 runs that ran with the machine otherwise idle
# (load average under 2.6) of issue 25's 29-run
#   peftlab run examples/financial-phrasebank-minilm.yaml --methods zero-shot,full,lora,ia3,prompt-tuning --tune 4 --seeds 3
# training 1.67 (full) and 1.97 (PEFT), validation passes left out; evaluation 0.61.
TRAIN_EFFICIENCY = 1.8
EVAL_EFFICIENCY = 0.6
SECONDS = 0.25  # how long the multiply is timed


def _cpu_threads() -> int:
    return torch.get_num_threads() or os.cpu_count() or 1


@functools.lru_cache(maxsize=16)
def matmul_flops(rows: int, hidden: int, precision: str, cuda: bool) -> float:
    """FLOP/s of (rows x hidden) @ (hidden x 4 hidden), a transformer MLP's first multiply, at
    `precision` ("fp32", "bf16" or "fp16"): on a GPU its wall-clock rate; on a CPU one thread's
    rate in its own CPU time (the caller scales it by the threads a run uses)."""
    device = "cuda" if cuda else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    if dtype is torch.float16 and not cuda:
        dtype = torch.float32  # fp16 is a GPU precision; a CPU run falls back to fp32
    rows, hidden = max(1, min(rows, 4096)), max(8, min(hidden, 8192))
    flops = 2.0 * rows * hidden * 4 * hidden
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(rows, hidden, device=device, dtype=dtype, generator=g)
    b = torch.randn(hidden, 4 * hidden, device=device, dtype=dtype, generator=g)
    threads = torch.get_num_threads()
    clock = time.perf_counter if cuda else time.thread_time
    try:
        if not cuda:
            torch.set_num_threads(1)
        for _ in range(2):  # warm-up: kernels chosen, caches filled
            a @ b
        n, wall, c0 = 0, time.perf_counter(), clock()
        while n < 3 or time.perf_counter() - wall < SECONDS:
            a @ b
            n += 1
            if cuda:
                torch.cuda.synchronize()
        return n * flops / max(clock() - c0, 1e-9)
    finally:
        torch.set_num_threads(threads)


def machine_rates(rows: int, hidden: int, precision: str, cuda: bool,
                  threads: int | None = None, eval_precision: str | None = None) -> tuple[float, float]:
    """(training, evaluation) FLOP/s a run of this width is expected to reach on this machine alone,
    with `threads` CPU threads (default: this process's); evaluation at `eval_precision` (default
    the training's)."""
    n = 1 if cuda else (threads or _cpu_threads())
    peak = matmul_flops(rows, hidden, precision, cuda) * n
    ev = peak if eval_precision in (None, precision) else matmul_flops(rows, hidden, eval_precision, cuda) * n
    return peak * TRAIN_EFFICIENCY, ev * EVAL_EFFICIENCY
