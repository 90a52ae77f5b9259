"""Device and precision: detect what the hardware supports instead of assuming it.

bf16 autocast is a large speed-up only where the hardware has native bf16 (CUDA Ampere+,
CPUs with AVX512-BF16 or AMX). On a CPU without it (AVX2 only) bf16 matmuls are emulated
and many times slower than fp32, so `precision: auto` picks fp32 there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def device_name() -> str:
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    cap = torch.backends.cpu.get_cpu_capability()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return bool(amx or avx512_bf16) or cap == "AMX"


def resolve_precision(requested: str) -> str:
    """'auto' -> bf16 where natively supported, else fp32. Explicit choices are kept."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@contextlib.contextmanager
def autocast(precision: str) -> Iterator[None]:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device_name(), dtype=dtype):
        yield


def describe() -> dict[str, str]:
    info = {"device": device_name(), "torch_threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    else:
        info["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
        info["cpu_native_bf16"] = str(cpu_has_native_bf16())
    return info
