"""Preset variants: a preset name with config overrides, as one string that travels everywhere a name does.

``dsvl-tiny-hybrid[aligner.depth=3]`` is the tiny hybrid preset with a 3-layer aligner; stage
hand-off cards, sweep runs and checkpoints carry it like any preset name, and
:meth:`~.dsvl.DSVLConfig.from_name` builds it.
"""
from __future__ import annotations

import json
from typing import Any


def variant_name(preset: str, overrides: dict[str, Any]) -> str:
    """``preset`` with config overrides, as one name: ``dsvl-tiny-hybrid[aligner.depth=3]``.

    Keys are sorted, so the same overrides always give the same name. Values are written as JSON
    (strings unquoted when they are plain words) and read back with YAML's rules.
    """
    if not overrides:
        return preset
    base, earlier = parse_variant(preset)
    merged = {**earlier, **overrides}
    parts = [f"{key}={_variant_value(value)}" for key, value in sorted(merged.items())]
    return f"{base}[{','.join(parts)}]"


def _variant_value(value: Any) -> str:
    text = json.dumps(value)
    return value if isinstance(value, str) and value.replace("_", "").replace("-", "").isalnum() else text


def parse_variant(name: str) -> tuple[str, dict[str, Any]]:
    """``"dsvl-tiny-hybrid[aligner.depth=3]"`` -> ``("dsvl-tiny-hybrid", {"aligner.depth": 3})``."""
    import yaml

    if "[" not in name:
        return name, {}
    if not name.endswith("]"):
        raise ValueError(f"preset variant {name!r} must end with ']': write name[key=value,key=value]")
    base, _, inner = name[:-1].partition("[")
    overrides: dict[str, Any] = {}
    for item in filter(None, inner.split(",")):
        key, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"preset variant {name!r}: {item!r} is not key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return base, overrides
