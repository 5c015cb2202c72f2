"""What every subcommand shares: the command table, exit codes, errors and the number options.

The command modules register themselves here with :func:`subcommand`; ``dsvl_lab.cli`` builds the
argparse parser from :data:`COMMANDS` and runs the chosen entry.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130  # 130: the shell's code for "stopped by SIGINT"
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# ============================================================================ the command table
@dataclass
class Command:
    name: str
    help: str
    example: str
    # None only for `fit`, which main() hands to LightningCLI before argparse sees it.
    run: Callable[[argparse.Namespace], int] | None
    args: list[tuple[tuple, dict]] = field(default_factory=list)
    details: str = ""  # more text for --help, under the one-line help


# name -> Command, in the order `dsvl-lab --help` lists them (the order they are registered).
COMMANDS: dict[str, Command] = {}


def arg(*names, **options) -> tuple[tuple, dict]:
    """One ``parser.add_argument(*names, **options)`` call, kept for later."""
    return names, options


def subcommand(name: str, help: str, example: str, args: list | None = None, details: str = ""):
    """Register the decorated function as ``dsvl-lab <name>``."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, example, run, list(args or []), details)
        return run

    return register


# ============================================================================ errors and Ctrl-C
class CLIError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def is_user_error(error: Exception) -> bool:
    """Problems with the input (paths, files, configs), as opposed to bugs, which keep their traceback."""
    expected = (CLIError, OSError, ValueError, KeyError)
    # A damaged weights file: safetensors has its own error type; check by name to avoid importing it.
    return isinstance(error, expected) or type(error).__name__ in ("SafetensorError", "UnpicklingError")


def stopped_by_ctrl_c(error: BaseException) -> bool:
    """Ctrl-C, directly or as the ``sys.exit(1)`` Lightning turns it into after its own clean-up."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt))


def what_was_kept(out: str | None) -> str:
    """One sentence for Ctrl-C: what a run folder holds now and how to go on."""
    if not out or not Path(out).is_dir():
        return "Nothing was kept; files written before the stop are whole (every write is atomic)."
    from ..run_folder import kept_summary

    return f"Kept in {out}: {kept_summary(out)}. Run the same command again to resume."


def existing_folder(path: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise CLIError(f"{folder} is not a folder; give the path of a model folder that is already on disk")
    return folder


# ============================================================================ number options
# argparse calls an option's ``type=`` on its text; an ArgumentTypeError becomes one line,
# ``dsvl-lab chat: error: argument --top-p: must be in (0, 1], got 1.5``, and exit status 2,
# before anything is loaded. Every numeric option of every subcommand goes through one of these.
def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """``type=`` for an integer option in ``low..high`` (no upper end when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def workers_or_auto(text: str) -> int | str:
    """``type=`` for ``--num-workers``: ``auto`` (the machine decides, ``data.datamodule.loader_workers``)
    or a whole number >= 0."""
    return "auto" if text.strip().lower() == "auto" else whole_number(0)(text)


def real_number(low: float, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """``type=`` for a finite number option >= ``low`` (> ``low`` when ``low_open``), <= ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            left = f"({low}" if low_open else f"[{low}"
            bounds = f"in {left}, {high}]" if high is not None else f"{'>' if low_open else '>='} {low}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, got {text}")
        return value

    return parse


COUNT = whole_number(1)  # samples, steps, tokens, processes: at least one
