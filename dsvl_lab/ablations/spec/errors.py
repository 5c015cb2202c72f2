"""The error a bad sweep.yaml raises, and the "did you mean" hint its messages end with."""
from __future__ import annotations

from ...config import did_you_mean
from ...errors import InputError


class SweepConfigError(InputError):
    """A bad sweep.yaml, found before anything runs; names the file, the key and the fix."""


def suggest(word: str, options) -> str:
    """The closest valid key, else the list of valid ones."""
    return did_you_mean(word, options) or f"; valid: {', '.join(map(str, options))}"

