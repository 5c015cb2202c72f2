"""The error a bad line of a sample file raises, shared by the line checks, the image checks and the reader."""
from __future__ import annotations

import os

from ...errors import InputError


class DataError(InputError):
    """A bad sample in a data file: ``source`` is ``file:line``, ``key`` the field (``"qa[0].options"``).

    ``reason`` is a short category ("wrong type", "missing image", ...): skipped lines are
    counted by it. Problems with the line as a whole (not UTF-8, not JSON) have ``key="line"``.
    """

    def __init__(self, problem: str, source: str | os.PathLike | None = None, key: str | None = None,
                 reason: str | None = None) -> None:
        self.reason = reason or problem.split(":")[0]
        super().__init__(problem, source=source, key=key)

