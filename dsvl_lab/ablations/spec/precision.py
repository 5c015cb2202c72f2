"""The ``precision`` key: Lightning's precision of training and evaluation; ``auto`` is resolved when a sweep
is planned, so a run's hash names the precision it really ran with (the rule: ``dsvl_lab.harness.precision``)."""
from __future__ import annotations

from ...harness.precision import PRECISIONS, fast_bf16
from ...harness.precision import resolve_precision as resolve_on_this_machine
from .errors import SweepConfigError

__all__ = ["PRECISIONS", "fast_bf16", "resolve_precision"]


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 autocast where bf16 matmuls are fast (GPUs; CPUs with AMX / AVX-512 BF16), else fp32."""
    try:
        return resolve_on_this_machine(precision)
    except ValueError as error:
        raise SweepConfigError(str(error)) from None
