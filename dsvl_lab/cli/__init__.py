"""The ``dsvl-lab`` command.

Every subcommand is one small function registered with :func:`subcommand`, which records its
name, one-line help, usage example and arguments in the ``COMMANDS`` table; :func:`main` builds
the argparse parser from that table. To add a subcommand, write a function that takes the parsed
``args`` and returns an exit code, and decorate it in the module of its group::

    @subcommand("hello", "say hello", example="dsvl-lab hello --name Ada",
                args=[arg("--name", default="world")])
    def cmd_hello(args):
        print(f"hello {args.name}")
        return 0

One module per command group: ``model_commands`` (presets, info, convert), ``data_commands``
(data, pretrain), ``trace_commands`` (trace), ``training_commands`` (fit, pipeline),
``study_commands`` (sweep, aggregate), ``chat_commands`` (chat); ``common`` holds the table, the
errors and the number options, ``output_files`` the checks on the files a command may overwrite.

Expected problems (a missing folder, a bad config, an unknown preset) print one line to stderr and
exit with status 2, without a traceback; set ``DSVL_LAB_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys

from .common import (COMMANDS, EXIT_INTERRUPTED, EXIT_USAGE, CLIError, arg, is_user_error, stopped_by_ctrl_c,
                     subcommand, what_was_kept)

# torch and the model are imported inside the subcommands that need them, so `dsvl-lab --help`
# answers at once: the CLI is the one place in the package where such lazy imports are justified.
# Importing the groups registers their subcommands; this order is the order `dsvl-lab --help` lists them.
from . import model_commands, data_commands, trace_commands  # noqa: F401
from . import training_commands, study_commands, chat_commands  # noqa: F401
from . import accounting_commands  # noqa: F401
from .training_commands import run_fit

__all__ = ["COMMANDS", "CLIError", "arg", "build_parser", "main", "subcommand"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsvl-lab",
        description="A workbench for learning, reproducing and ablating DeepSeek-VL.",
        epilog="Example:\n  dsvl-lab presets\n\nRun 'dsvl-lab <command> --help' for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for command in COMMANDS.values():
        examples = command.example.splitlines()
        sub = commands.add_parser(
            command.name, help=command.help.replace("%", "%%"),  # argparse %-formats a sub-command's help line
            description=command.help + ("\n\n" + command.details if command.details else ""),
            epilog=("Examples:" if len(examples) > 1 else "Example:") + "".join(f"\n  {e}" for e in examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for names, options in command.args:
            sub.add_argument(*names, **options)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dsvl-lab`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["fit"]:  # LightningCLI parses its own arguments (and answers --help)
        return run_fit(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (KeyboardInterrupt, SystemExit) as error:
        if not stopped_by_ctrl_c(error):
            raise
        print(f"dsvl-lab {args.command}: stopped by Ctrl-C. {what_was_kept(getattr(args, 'out', None))}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not is_user_error(error) or os.environ.get("DSVL_LAB_DEBUG"):
            raise
        # KeyError's str() wraps the message in quotes; args[0] is the message itself.
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"dsvl-lab {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
