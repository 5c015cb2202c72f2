"""``FSDPStrategy`` with the two FSDP options our 7B piece needs as named arguments.

Lightning's ``FSDPStrategy`` hands extra keyword arguments on to torch's FSDP, but LightningCLI
(jsonargparse) only accepts the arguments a class names, so ``use_orig_params`` and
``limit_all_gathers`` in ``configs/trainer/fsdp-7b.yaml`` were refused ("Option 'use_orig_params' is
not accepted"). Naming them here lets the piece parse; the strategy is otherwise Lightning's.
"""
from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import FSDPStrategy


class DSVLFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP strategy; ``use_orig_params`` (frozen and trainable parameters may share a unit,
    as they do in stage 2) and ``limit_all_gathers`` are passed to torch's FSDP."""

    def __init__(self, *args: Any, use_orig_params: bool = True, limit_all_gathers: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, use_orig_params=use_orig_params, limit_all_gathers=limit_all_gathers, **kwargs)
