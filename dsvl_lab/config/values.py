"""Checking one value: the type and range tests and the message helpers every config reader shares.

Our config (:mod:`.checks`), the stage specs, the sweep specs and the transformers / original
``config.json`` readers all phrase a bad value the same way: ``must be a positive integer, got 'x'``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def type_name(value: Any) -> str:
    """'a list', 'a string', ... for messages about a value of the wrong kind."""
    names = {list: "a list", tuple: "a list", dict: "an object", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def shown(value: Any) -> str:
    """``repr(value)``, cut short: a message stays one readable line whatever the file holds."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print (Python's 4300-digit limit)
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> bool:
    """An integer, not a bool (JSON ``true`` is not a size) and not ``64.0``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def value_problem(kind: str, value: Any) -> str | None:
    """What is wrong with ``value`` as a ``kind`` (see :func:`~.checks.field_kind`), or None.

    Shared by our config, the transformers and the original ``config.json`` readers.
    """
    if kind == "size" and not (is_int(value) and value >= 1):
        return f"must be a positive integer, got {shown(value)}"
    if kind == "index" and not (is_int(value) and value >= 0):
        return f"must be an integer >= 0, got {shown(value)}"
    if kind == "positive" and not (is_number(value) and value > 0):
        return f"must be a positive number, got {shown(value)}"
    if kind == "text" and not isinstance(value, str):
        return f"must be a string, got {shown(value)}"
    if kind == "mapping" and not isinstance(value, Mapping):
        return f"must be an object of keys and values, got {type_name(value)}"
    if kind in ("triple", "positive_triple"):
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(map(is_number, value))):
            return f"must be a list of 3 numbers (one per RGB channel), got {shown(value)}"
        if kind == "positive_triple" and min(value) <= 0:
            return f"must be 3 positive numbers, got {shown(value)}"
    if kind == "indexes" and not (isinstance(value, (list, tuple)) and all(is_int(i) and i >= 0 for i in value)):
        return f"must be a list of integers >= 0, got {shown(value)}"
    return None


def did_you_mean(word: str, options, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, or nothing."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""
