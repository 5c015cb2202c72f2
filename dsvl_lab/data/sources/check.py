"""Check every row of a user source before training on it: what ``dsvl-lab data check --kind ...`` runs.

Each row goes through exactly what a stage does when it draws the row (``records.py``'s checks,
the image path confined to the image folder, the image's size read from its header), except that
no pixel is decoded, so a file of any length is checked in constant memory. Bad rows are counted
by reason with ``file:line``, as a stage with ``on_bad_sample: skip`` counts them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..jsonl.errors import DataError
from ..jsonl.images import DEFAULT_MAX_IMAGE_PIXELS, image_header_size
from .mixture import open_source
from .records import image_record, text_of
from .spec import SourceSpec

PROBLEMS_KEPT = 20


@dataclass
class SourceCheck:
    """The outcome of checking one source: good rows, skipped rows by reason, the first messages."""

    label: str
    modality: str
    rows: int = 0
    good: int = 0
    held_out: int = 0
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        bad = sum(self.skipped.values())
        reasons = f": {dict(self.skipped)}" if bad else ""
        return (f"{self.label} ({self.modality}): {self.rows} rows, {self.good} good, {bad} bad{reasons}; "
                f"{self.held_out} held out for validation")


def check_source(spec: SourceSpec, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SourceCheck:
    """Read every row of ``spec``'s file as a stage would (headers only); count what is wrong."""
    source = open_source(spec)
    result = SourceCheck(spec.label, source.modality, rows=len(source.rows))
    for row in range(len(source.rows)):
        try:
            if source.modality == "text":
                text_of(*source.rows.get(row), spec.text_field)
            else:
                record = image_record(*source.rows.get(row), source.image_folder, spec.allow_outside_paths)
                if not isinstance(record.image, bytes):
                    try:
                        image_header_size(record.image, max_image_pixels)
                    except DataError as error:
                        raise DataError(error.problem, source=record.where, key="image",
                                        reason=error.reason) from None
        except DataError as error:
            result.skipped[error.reason] += 1
            if len(result.problems) < PROBLEMS_KEPT:
                result.problems.append(error.format())
            continue
        result.good += 1
        result.held_out += not source.in_split(row, "train")
    return result
