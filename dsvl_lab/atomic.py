"""Atomic file writes: a reader (or a crash) never sees half a file.

Write to a temporary file in the target's folder (same file system, so the rename is atomic),
then ``os.replace`` it onto the target. On any error the temporary file is removed and the
previous version of the target, if any, is left untouched.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(target: str | os.PathLike, write: Callable[[str], Any], mode: int = 0o644) -> Path:
    """Call ``write(temporary_path)``, then move the result onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # mkstemp makes files private (0600); results and shipped files should be readable
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    return atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(target: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(target, json.dumps(data, indent=2) + "\n")
