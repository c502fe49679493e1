"""Device and precision: CUDA when present, else CPU; bf16 autocast where the hardware runs it natively."""

from __future__ import annotations

import contextlib
import os
import platform
import typing
from typing import Literal

import torch

from .errors import UserError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where oneDNN runs bf16 convolutions fast. Elsewhere bf16 is
    emulated and far slower than fp32 (measured 10x slower on an AVX2-only EPYC), so ``auto`` avoids it."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def cpu_flags() -> set[str]:
    """The instruction-set flags of this machine's CPU as Linux names them (``avx2``, ``avx512_vnni``, ...); empty
    where /proc/cpuinfo is not readable (other systems), so callers fall back to their portable choice."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_vnni() -> bool:
    """True on CPUs with an int8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8): there int8 kernels
    multiply u8 x s8 without the 16-bit saturation of plain AVX2, and int8 models run several times faster."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_name() -> str:
    """The CPU's model name, for benchmark tables."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2


def available_memory() -> int:
    """Bytes of memory the system can give this process now (Linux MemAvailable; elsewhere a guess of 8 GiB)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def cpu_summary() -> str:
    """The CPU's name, the instruction sets that decide our speed (AVX2, AVX-512, VNNI, native bf16, AMX) and its
    core count: the machine line of every benchmark table."""
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in cpu_flags()]
    return f"{cpu_name()} ({', '.join(isa) or 'flags unknown'}), {os.cpu_count()} cpus"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but CUDA is not available here; use --set device=cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into the fastest accurate choice for ``device``: bf16 on CUDA (Ampere+) and bf16-capable CPUs."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError("fp16 training needs a CUDA device; use precision bf16 or fp32 on the CPU")
    return precision


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU): what a timing must do before it reads the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str, cache: bool = True):
    """The autocast context for a resolved precision (a no-op for fp32). ``cache=False`` while a CUDA graph is being
    captured: the cache of cast weights must not outlive the capture."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)
