"""The ``precision`` key: Lightning's precision of training and evaluation; ``auto`` is resolved when a sweep
is planned, so a run's hash names the precision it really ran with."""
from __future__ import annotations

from .errors import SweepConfigError

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "auto")


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 autocast where bf16 matmuls are fast (GPUs; CPUs with AMX / AVX-512 BF16), else fp32.

    Measured on a 2-core AMD EPYC without bf16 instructions (2026-11-30): a 1024^2 matmul runs at
    140 GFLOP/s in fp32 and 0.9 GFLOP/s in bf16, so bf16-mixed training is about 20x slower there.
    """
    if precision not in PRECISIONS:
        raise SweepConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16-mixed" if fast_bf16() else "32-true"


def fast_bf16() -> bool:
    """A GPU with bf16, or a CPU where a bf16 matmul takes under twice the fp32 time (timed here, 256^2)."""
    import time

    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(256, 256, dtype=dtype)
        a @ a
        start = time.perf_counter()
        for _ in range(3):
            a @ a
        seconds[dtype] = time.perf_counter() - start
    return seconds[torch.bfloat16] < 2 * seconds[torch.float32]
