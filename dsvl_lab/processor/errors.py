"""The processor's one error class, in its own module so every part of the processor can raise it."""
from __future__ import annotations

from ..errors import InputError


class ProcessorError(InputError):
    """Bad input to the processor; the message names the problem and the fix."""
