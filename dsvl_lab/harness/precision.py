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


@lru_cache(maxsize=1)
def fast_bf16() -> bool:
    """A GPU with bf16, or a CPU where a bf16 matmul takes under twice the fp32 time (timed once, 256^2)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(256, 256, dtype=dtype)
        a @ a  # the first call pays for kernel selection
        start = time.perf_counter()
        for _ in range(3):
            a @ a
        seconds[dtype] = time.perf_counter() - start
    return seconds[torch.bfloat16] < 2 * seconds[torch.float32]
