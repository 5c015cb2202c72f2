"""What runs leave behind, read and written one way: tensor checksums, cards and the metrics log.

- ``tensor_checksum``: sha256 over every tensor's name, dtype, shape and bytes, equal iff the weights
  are bit-identical (the foundation cards, the stage hand-off and the freeze audit record it);
- ``file_sha256``: the sha256 of a file's bytes;
- ``write_card`` / ``read_card``: a run's card ``<name>.json`` (for code) and optionally ``<name>.md``
  (for people) in a folder: a foundation part's model card (``lm``, ``siglip``, ``sam``) or a stage's
  hand-off card (``stage``);
- ``read_metrics``: a run's CSV log, ``out/logs/metrics.csv``, as rows of floats.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .atomic import write_json_atomic, write_text_atomic


def tensor_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor in name order: equal iff bit-identical."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_card(folder: str | Path, name: str, card: dict[str, Any], markdown: str | None = None) -> Path:
    """Write ``folder/<name>.json`` (and ``<name>.md`` when given), each atomically; returns the JSON path.

    Values JSON cannot hold (paths, say) are written as strings, so a card always writes.
    """
    folder = Path(folder)
    path = write_json_atomic(folder / f"{name}.json", json.loads(json.dumps(card, default=str)))
    if markdown is not None:
        write_text_atomic(folder / f"{name}.md", markdown)
    return path


def read_card(folder: str | Path, name: str) -> dict[str, Any] | None:
    """``folder/<name>.json`` as written by ``write_card``; None if there is none (the caller says what to do)."""
    path = Path(folder) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def read_metrics(out: str | Path) -> list[dict[str, float]]:
    """A run's CSV log (``out/logs/metrics.csv``) as rows of floats, empty cells dropped; [] if there is none."""
    path = Path(out) / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{key: float(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(handle)]
