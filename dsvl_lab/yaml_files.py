"""Reading the YAML files users write (sweep.yaml, stage pieces) so that every problem names the file.

    >>> from dsvl_lab.yaml_files import read_yaml
    >>> data = read_yaml("ablations/encoder/sweep.yaml")   # a dict, list or plain value

What :func:`read_yaml` refuses, each as one :class:`~dsvl_lab.errors.InputError` line with the file
(and line, where the YAML parser gives one) and the key:

- text that is not YAML (``file:line: not valid YAML: <the parser's reason>``);
- anything but ``yaml.safe_load``'s plain data: no Python tags, ever;
- an alias that refers to itself (``a: &x [*x]``): the data would be infinite, and code walking it
  (JSON, hashing, validation) would recurse forever;
- aliases that expand to more than :data:`MAX_NODES` values (the "billion laughs" file: a few lines
  that expand to gigabytes once anything copies them);
- dates, binary and sets (``2024-01-01`` unquoted is a date in YAML): the readers expect strings,
  numbers, booleans, null, lists and mappings; quote the value to keep it a string.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import InputError

MAX_NODES = 100_000  # values after expanding aliases; the largest sweep.yaml here has about 60
PLAIN = (str, int, float, bool, type(None))


class YamlFileError(InputError):
    """A YAML file that cannot be read as plain data; names the file, the line or the key."""


def read_yaml(path: str | os.PathLike, error: type[InputError] = YamlFileError) -> Any:
    """The plain data in a YAML file, checked as above; problems raise ``error(problem, source, key)``."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error("no such file", source=path) from None
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"cannot read it ({problem.__class__.__name__})", source=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as problem:
        mark = problem.problem_mark or problem.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        reason = " ".join(str(problem.problem or problem.context or "syntax error").split())
        raise error(f"not valid YAML: {reason}", source=where) from None
    except yaml.YAMLError as problem:
        raise error(f"not valid YAML: {' '.join(str(problem).split())[:160]}", source=path) from None
    except (ValueError, RecursionError) as problem:  # a number over 4300 digits; nesting too deep
        raise error(f"not readable: {str(problem).splitlines()[0][:100] or 'nested too deeply'}", source=path) from None
    check_plain(data, path, error)
    return data


def check_plain(data: Any, source: str | os.PathLike, error: type[InputError] = YamlFileError) -> None:
    """Plain values only, no alias that contains itself, at most :data:`MAX_NODES` values in all."""
    seen = 0
    # Depth-first with an explicit stack (no recursion limit to hit); `open_ids` holds the containers
    # on the path from the root, so meeting one of them again means an alias refers to itself.
    stack: list[tuple[Any, str, frozenset]] = [(data, "", frozenset())]
    while stack:
        value, key, open_ids = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise error(f"holds over {MAX_NODES:,} values once its aliases are expanded; write the values out "
                        f"or use fewer nested aliases", source=source, key=key or None)
        if isinstance(value, (dict, list)):
            if id(value) in open_ids:
                raise error("an alias refers to the value that contains it (a recursive alias); "
                            "write the value out instead", source=source, key=key or None)
            inner = open_ids | {id(value)}
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for child_key, child in items:
                child_name = f"{key}[{child_key}]" if isinstance(value, list) else (
                    f"{key}.{child_key}" if key else str(child_key))
                if isinstance(value, dict) and not isinstance(child_key, PLAIN):
                    raise error(f"a key must be a plain value, got {type(child_key).__name__}",
                                source=source, key=key or None)
                stack.append((child, child_name, inner))
        elif not isinstance(value, PLAIN):
            raise error(f"is a YAML {type(value).__name__}; only strings, numbers, booleans, null, lists and "
                        f"mappings are read (quote it to keep it a string)", source=source, key=key or None)
