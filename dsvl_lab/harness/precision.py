"""Which precision a run trains in: Lightning's ``precision``, with ``auto`` resolved on this machine.

bf16 autocast halves the bytes a matmul moves and, on hardware with bf16 instructions (GPUs; CPUs
with AMX or AVX-512 BF16), runs it several times faster than fp32. On a CPU without them, torch
falls back to a slow path: measured on a 2-core AMD EPYC with AVX2 only (2026-11-30 and 2026-12-01),
a 1024 x 1024 matmul runs at 140-160 GFLOP/s in fp32 and 0.9-1.0 GFLOP/s in bf16, so bf16-mixed
training there is 20x slower or worse. ``auto`` therefore times both on the spot and takes the faster.
Runs record the precision they really used (a sweep's run hash, a pipeline's report).
"""
from __future__ import annotations

import time
from functools import lru_cache

import torch

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "auto")


def resolve_precision(precision: str) -> str:
    """``precision`` itself, or for ``auto``: ``bf16-mixed`` where bf16 matmuls are fast, else ``32-true``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16-mixed" if fast_bf16() else "32-true"


def measure_peak_flops(dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 5,
                       device: str = "cpu") -> float:
    """FLOP/s of a square matmul in ``dtype`` on ``device``, the best of ``repeats`` timings after a
    warm-up: the denominator of MFU where Lightning knows no peak (CPUs), and what ``fast_bf16`` compares."""
    # Its own generator: timing must not move the global RNG, or a run seeded before this is measured
    # (``resolve_precision("auto")``, the MFU peak) would initialise differently from the next run.
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    best = float("inf")
    for index in range(repeats + 1):
        start = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        if index:  # the first call pays for kernel selection
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


@lru_cache(maxsize=1)
def fast_bf16() -> bool:
    """A GPU with bf16, or a CPU where a bf16 matmul takes under twice the fp32 time (timed once, 256^2)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return measure_peak_flops(torch.bfloat16, 256, 3) > measure_peak_flops(torch.float32, 256, 3) / 2
