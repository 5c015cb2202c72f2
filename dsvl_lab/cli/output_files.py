"""Which files a command may write: new ones, or files of its own kind, never a model's.

A command overwrites only files of its own kind, recognised by their header: never a model's
weights or config (`dsvl-lab trace --out model/model.safetensors` once replaced the weights).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .common import CLIError

MODEL_CONFIGS = ("dsvl_config.json", "config.json")
MODEL_SUFFIXES = (".safetensors", ".bin", ".json")  # what a model loader reads from its folder


def is_model_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in MODEL_CONFIGS)


def check_output_file(path: str, option: str, kind: str, is_own: Callable[[Path], bool]) -> Path:
    """The path ``option`` may write: a new file, or a ``kind`` file this command wrote before.

    Refused with the fix: a folder; an existing file ``is_own`` does not recognise (weights, a config,
    anyone else's file); a weights- or config-like file inside a model folder, where the model's
    loader would read it (every ``*.safetensors`` there is taken for weights).
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise CLIError(f"{option} {target} is a folder; give the path of the {kind} to write")
    if target.exists() and not is_own(target):
        raise CLIError(f"{option} {target} exists and is not a {kind} (this command overwrites only its own); "
                       f"it was left untouched: choose another path")
    if target.suffix in MODEL_SUFFIXES and is_model_folder(target.parent):
        raise CLIError(f"{option} {target} is inside the model folder {target.parent}, whose loader would read it "
                       f"as part of the model; write it somewhere else")
    return target


def file_starts_with(path: Path, prefix: bytes, also: bytes = b"") -> bool:
    """The file begins with ``prefix`` (and its first 4 KB hold ``also``): its kind, from the header."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(prefix) and also in head


def is_trace_file(path: Path) -> bool:
    """A safetensors file whose metadata carries ``dsvl_trace`` (what AttentionTrace.save writes)."""
    import struct

    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > min(path.stat().st_size, 100 << 20):  # not a safetensors header
                return False
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return False
    return isinstance(header, dict) and "dsvl_trace" in (header.get("__metadata__") or {})


def is_trace_page(path: Path) -> bool:
    return file_starts_with(path, b"<!doctype html>", b"<title>Attention trace:")


def is_png(path: Path) -> bool:
    return file_starts_with(path, b"\x89PNG\r\n\x1a\n")
