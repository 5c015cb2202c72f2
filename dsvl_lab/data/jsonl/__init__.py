"""Samples on disk: one JSON object per line plus PNG images, and a contact-sheet preview.

The format (one line per sample; ``image`` is relative to the JSONL file)::

    {"id": "chart-fine-0", "family": "chart", "detail": "fine", "seed": 0, "image": "images/chart-fine-0.png",
     "caption": "A bar chart ...", "qa": [{"question": "...", "answer": "...", "options": ["...", "..."]}]}

A sample may instead carry a ready conversation (``"conversation": [{"role": "user", ...}, ...]``,
with ``<image_placeholder>`` where the image goes), which must alternate user and assistant turns.

Every line is checked before it is used, because a sample file is input from outside:

* types: ``image``, ``id``, ``family``, ``detail``, ``caption`` and each qa item's ``question``,
  ``answer``, ``kind``, ``detail`` are strings, ``options`` a list of strings holding the answer,
  ``seed`` an integer (not ``true``), ``qa`` a list of objects, ``conversation`` well-formed turns;
* the line itself: UTF-8, one JSON object, no duplicate keys, no NaN/Infinity, no 20-digit numbers,
  nesting at most :data:`MAX_NESTING` deep, at most :data:`MAX_LINE_BYTES` long;
* the image path stays inside the sample file's folder after ``..`` and symlinks are resolved
  (absolute paths and escapes need ``allow_outside_paths=True``), and the image's header says it
  is within the processor's pixel limit (``max_image_pixels``) before a pixel is decoded.

A problem raises :class:`DataError` with ``source="<file>:<line>"`` and ``key`` the field
(``"qa[0].options"``). Reading is strict by default: the first bad line raises. With
``on_bad_sample="skip"`` bad lines are skipped and counted by reason (``skipped``), and no bad
line aborts the read, so a long run never dies mid-epoch on one broken sample without saying which.

Reading streams: :class:`JsonlReader` holds one line at a time. :func:`check_jsonl` (what
``dsvl-lab data check`` runs) reads only image headers, so its memory does not grow with the
file; :func:`iter_jsonl` decodes one image per sample as it goes; :func:`read_jsonl` keeps every
sample (and its decoded image) in a list, for files that fit in memory.

One file per step, each using only the ones above it:

* ``errors.py``: :class:`DataError`;
* ``lines.py``: one line, bytes -> checked JSON object -> :class:`Sample` (:func:`check_record`);
* ``images.py``: its image, path confined, header read, then decoded (:func:`resolve_image_path`);
* ``writing.py``: :func:`write_jsonl` and the :func:`contact_sheet` preview;
* this file: reading a whole file (:class:`JsonlReader`, :func:`check_jsonl`, :func:`iter_jsonl`,
  :func:`read_jsonl`), one line at a time. The reader and its limits (``MAX_LINE_BYTES``,
  ``MAX_PROBLEMS_KEPT``) stay in the package itself, so that ``dsvl_lab.data.jsonl.MAX_LINE_BYTES``
  is the value the reader reads (tests/test_jsonl.py lowers it to test a long line).

Everything is importable from ``dsvl_lab.data.jsonl`` directly.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ...atomic import write_text_atomic  # noqa: F401  (importable from here, as before the split)
from ...errors import InputError
from ..tasks import QA, Sample  # noqa: F401  (QA: as above)
from .errors import DataError
from .images import DEFAULT_MAX_IMAGE_PIXELS, decode_image, image_header_size, resolve_image_path
from .lines import (MAX_INT_DIGITS, MAX_NESTING, QA_TEXT_FIELDS, REQUIRED_FIELDS, ROLES, TEXT_FIELDS, bounded_int,
                    check_conversation, check_integer, check_list, check_object, check_qa, check_record, check_text,
                    finite_float, json_type, nesting_depth, parse_record, refuse_constant, to_sample, unique_keys)
from .writing import contact_sheet, write_jsonl

ON_BAD_SAMPLE = ("raise", "skip")
MAX_LINE_BYTES = 16 * 2**20  # a sample is a few kB; a longer "line" is a broken or binary file
MAX_PROBLEMS_KEPT = 20       # messages of skipped lines kept for the report (counts are kept for all)
SKIP_HINT = "or skip bad lines with on_bad_sample='skip' (dsvl-lab data check --on-bad-sample skip)"

__all__ = [
    # reading (this file)
    "JsonlReader", "JsonlSamples", "CheckedLine", "check_jsonl", "iter_jsonl", "read_jsonl", "numbered_lines",
    "ON_BAD_SAMPLE", "MAX_LINE_BYTES", "MAX_PROBLEMS_KEPT", "SKIP_HINT",
    # errors.py, lines.py
    "DataError", "parse_record", "unique_keys", "refuse_constant", "bounded_int", "finite_float", "check_record",
    "nesting_depth", "check_qa", "check_conversation", "check_text", "check_integer", "check_list", "check_object",
    "json_type", "to_sample", "REQUIRED_FIELDS", "MAX_NESTING", "MAX_INT_DIGITS", "TEXT_FIELDS", "QA_TEXT_FIELDS",
    "ROLES",
    # images.py, writing.py
    "DEFAULT_MAX_IMAGE_PIXELS", "resolve_image_path", "image_header_size", "decode_image", "write_jsonl",
    "contact_sheet",
]


@dataclass
class JsonlSamples:
    """The samples of one JSONL file, read and checked line by line."""

    path: Path
    samples: list[Sample] = field(default_factory=list)
    conversations: list[list[dict] | None] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class CheckedLine:
    """One good line: its checked JSON object and its image's path and size (read from the header only)."""

    source: str                # "file:line"
    record: dict
    image_path: Path           # resolved: no "..", no symlinks
    image_size: tuple[int, int]


# ============================================================================ reading
class JsonlReader:
    """Streams a sample file: iterating yields each good line as a :class:`CheckedLine`.

    One line is in memory at a time and no pixel is decoded, so checking a file of any length
    takes the same memory. Bad lines raise :class:`DataError` (``on_bad_sample="raise"``) or are
    counted in ``skipped`` by reason, with the first messages kept in ``problems`` ("skip").
    """

    def __init__(self, path: str | os.PathLike, on_bad_sample: str = "raise", *, allow_outside_paths: bool = False,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise InputError(f"must be one of {ON_BAD_SAMPLE}, got {on_bad_sample!r}", key="on_bad_sample")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no sample file at {self.path}")
        self.on_bad_sample, self.allow_outside_paths = on_bad_sample, allow_outside_paths
        self.max_image_pixels = max_image_pixels
        self.folder = self.path.parent.resolve()  # image paths are relative to (and confined to) this folder
        self.good, self.skipped, self.problems = 0, Counter(), []

    def __iter__(self) -> Iterator[CheckedLine]:
        with self.path.open("rb") as file:
            for number, raw in numbered_lines(file):
                if raw is not None and not raw.strip():
                    continue
                source = f"{self.path}:{number}"
                try:
                    line = self.check_line(raw, source)
                except DataError as error:
                    self.bad_line(error, source)
                    continue
                self.good += 1
                yield line

    def check_line(self, raw: bytes | None, source: str) -> CheckedLine:
        if raw is None:
            raise DataError(f"line too long: over {MAX_LINE_BYTES:,} bytes; a sample is one short JSON object "
                            f"per line (is this a JSONL file?)", key="line", reason="line too long")
        record = check_record(parse_record(raw))
        image_path = resolve_image_path(record["image"], self.folder, self.allow_outside_paths)
        size = image_header_size(image_path, self.max_image_pixels)
        return CheckedLine(source, record, image_path, size)

    def bad_line(self, error: DataError, source: str) -> None:
        """Raise the error with its file:line, or count it and go on (``on_bad_sample="skip"``)."""
        if self.on_bad_sample == "raise":
            raise DataError(f"{error.problem}; {SKIP_HINT}", source=source, key=error.key,
                            reason=error.reason) from None
        self.skipped[error.reason] += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(DataError(error.problem, source=source, key=error.key).format())

    def samples(self) -> Iterator[tuple[Sample, list[dict] | None]]:
        """Each good line as a :class:`Sample` with its image decoded, plus its conversation (or None)."""
        for line in self:
            try:
                image = decode_image(line.image_path, self.max_image_pixels)
            except DataError as error:  # a header that reads but pixels that do not (a truncated file)
                self.good -= 1  # counted as good when its header read
                self.bad_line(error, line.source)
                continue
            yield to_sample(line.record, image), line.record.get("conversation")

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = f": {dict(self.skipped)}" if skipped else ""
        return f"{self.path}: {self.good} good sample(s), {skipped} skipped{reasons}"


def check_jsonl(path: str | os.PathLike, on_bad_sample: str = "raise", *, allow_outside_paths: bool = False,
                max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> JsonlReader:
    """Check every line without decoding images (streaming); the returned reader has the counts."""
    reader = JsonlReader(path, on_bad_sample, allow_outside_paths=allow_outside_paths,
                         max_image_pixels=max_image_pixels)
    for _ in reader:
        pass
    return reader


def iter_jsonl(path: str | os.PathLike, on_bad_sample: str = "raise", *, allow_outside_paths: bool = False,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Iterator[tuple[Sample, list[dict] | None]]:
    """Yield ``(sample, conversation)`` one line at a time, each image decoded as its sample is reached."""
    reader = JsonlReader(path, on_bad_sample, allow_outside_paths=allow_outside_paths,
                         max_image_pixels=max_image_pixels)
    yield from reader.samples()
    if reader.skipped:
        print(reader.summary())


def read_jsonl(path: str | os.PathLike, on_bad_sample: str = "raise", *, allow_outside_paths: bool = False,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> JsonlSamples:
    """Read and check every line into memory; see the module docstring for the checks and the policy."""
    reader = JsonlReader(path, on_bad_sample, allow_outside_paths=allow_outside_paths,
                         max_image_pixels=max_image_pixels)
    result = JsonlSamples(reader.path, skipped=reader.skipped, problems=reader.problems)
    for sample, conversation in reader.samples():
        result.samples.append(sample)
        result.conversations.append(conversation)
    if result.skipped:
        print(reader.summary())
    return result


def numbered_lines(file) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` one line at a time; ``None`` for a line over MAX_LINE_BYTES (never held whole)."""
    number = 0
    while raw := file.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := file.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # read past the rest of the long line in bounded pieces
            raw = None
        yield number, raw
