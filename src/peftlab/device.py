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


# CPU flags that decide how fast each precision runs: bf16 is native only with AVX512-BF16 or AMX.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name and which of `SPEED_FLAGS` it has (Linux: /proc/cpuinfo; elsewhere
    the platform's processor name and no flags)."""
    import platform

    name, flags, fields = platform.processor() or platform.machine(), set(), {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                flags = set(value.split())
                break
    name = fields.get("model name", name)
    if "cpu family" in fields and "model" in fields:  # a VM's model name can be as short as "AMD EPYC"
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name, [f for f in SPEED_FLAGS if f in flags]


def describe() -> dict[str, str]:
    info = {"device": device_name(), "torch_threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    else:
        name, flags = cpu_model()
        info["cpu"] = name
        info["cpu_flags"] = " ".join(flags)
        info["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
        info["cpu_native_bf16"] = str(cpu_has_native_bf16())
    return info
