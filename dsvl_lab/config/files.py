"""Reading a config file: a ``dsvl_config.json`` (or a transformers / original ``config.json``) as a JSON object.

Every problem with the file itself (missing, unreadable, not JSON, not an object) is a
:class:`ConfigError` naming the file; the values inside are checked by the reader that uses them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .values import type_name


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """A config file's JSON object; unreadable, invalid or non-object JSON is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file; is this a model folder?", source=path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read it ({error.__class__.__name__}); re-copy the file", source=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"not valid JSON: {error.msg} (column {error.colno}); fix or re-copy the file",
                          source=f"{path}:{error.lineno}") from None
    except (ValueError, RecursionError) as error:  # an integer of over 4300 digits, nesting too deep
        raise ConfigError(f"not readable JSON: {str(error).splitlines()[0][:100]}", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"must hold a JSON object, got {type_name(data)}", source=path)
    return data


def in_file(error: ConfigError, source: str | os.PathLike | None) -> ConfigError:
    """The same error, naming the file it came from (unless it already names one)."""
    return error.at(source)
