"""The project's own error types: a problem with the user's input or folders, never a bug.

Every problem the user can fix is raised as a subclass of :class:`InputError`, with the file (and
line, where there is one) and the key it is about, so that

* the command line prints it as one line (``dsvl-lab <command>: error: <file>:<line>: <key>: ...``)
  instead of a traceback,
* tests (and the fuzz test) can assert that bad input never surfaces as another exception
  (``KeyError``, ``TypeError``, a raw ``yaml`` or ``json`` error).

The older domain errors (``DataError``, ``StageConfigError``, ``ProcessorError``, ...) subclass it,
and it subclasses ``ValueError`` so code that catches ``ValueError`` keeps working.

This module is at the bottom of the import graph: it imports nothing from the package.
"""
from __future__ import annotations

import os


class InputError(ValueError):
    """A problem with input the user can fix; the message says where it is and what to do.

    Args:
        problem: what is wrong and, where possible, the fix.
        source: the file it was found in (optionally ``file:line``); ``None`` for arguments.
        key: the field, key or option it is about (``"aligner.depth"``, ``"qa[0].options"``).
    """

    def __init__(self, problem: str, source: str | os.PathLike | None = None, key: str | None = None) -> None:
        self.problem, self.source, self.key = problem, None if source is None else str(source), key
        super().__init__(self.format())

    def format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        what = f"{self.key}: " if self.key else ""
        return f"{where}{what}{self.problem}"

    def at(self, source: str | os.PathLike | None) -> "InputError":
        """This error, now naming ``source`` (the file being read) unless it names one already.

        For checks that know the key but not the file (``StageSpec.validate``): the reader that
        opened the file adds it on the way out, ``raise error.at(path)``.
        """
        if source is not None and self.source is None:
            self.source = str(source)
            self.args = (self.format(),)  # str(error) is args[0]
        return self


class ConfigError(InputError):
    """A bad model config (``dsvl_config.json``, a transformers or original ``config.json``)."""


class RunFolderError(InputError):
    """A run folder that cannot be written as asked: held by another process, finished, or damaged."""
