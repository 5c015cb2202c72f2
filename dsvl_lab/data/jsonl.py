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
"""
from __future__ import annotations

import json
import math
import os
import reprlib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from PIL import Image

from ..atomic import write_text_atomic

from .tasks import QA, Sample
from ..errors import InputError

REQUIRED_FIELDS = ("image",)
ON_BAD_SAMPLE = ("raise", "skip")
# The processor's default (DSVLConfig.max_image_pixels); not imported from dsvl_lab.processor,
# which imports torch, so that `dsvl-lab data check` stays quick. A test keeps the three equal.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
MAX_LINE_BYTES = 16 * 2**20  # a sample is a few kB; a longer "line" is a broken or binary file
MAX_NESTING = 16             # a sample nests 4 deep (record > qa > item > options); more is garbage
MAX_INT_DIGITS = 19          # a seed fits in 64 bits; refuse longer numbers before Python converts them
MAX_PROBLEMS_KEPT = 20       # messages of skipped lines kept for the report (counts are kept for all)
TEXT_FIELDS = ("image", "id", "family", "detail", "caption")
QA_TEXT_FIELDS = ("question", "answer", "kind", "detail")
ROLES = ("system", "user", "assistant")
SKIP_HINT = "or skip bad lines with on_bad_sample='skip' (dsvl-lab data check --on-bad-sample skip)"


class DataError(InputError):
    """A bad sample in a data file: ``source`` is ``file:line``, ``key`` the field (``"qa[0].options"``).

    ``reason`` is a short category ("wrong type", "missing image", ...): skipped lines are
    counted by it. Problems with the line as a whole (not UTF-8, not JSON) have ``key="line"``.
    """

    def __init__(self, problem: str, source: str | os.PathLike | None = None, key: str | None = None,
                 reason: str | None = None) -> None:
        self.reason = reason or problem.split(":")[0]
        super().__init__(problem, source=source, key=key)


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


# ============================================================================ one line
def parse_record(raw: bytes) -> Any:
    """Bytes -> the JSON value, refusing what ``json.loads`` would let through or crash on."""
    try:
        text = raw.decode("utf-8-sig")  # -sig: a byte-order mark some editors put first is not an error
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8: byte {error.start} cannot be decoded; re-save the file as UTF-8",
                        key="line") from None
    try:
        return json.loads(text, object_pairs_hook=unique_keys, parse_constant=refuse_constant,
                          parse_int=bounded_int, parse_float=finite_float)
    except DataError:
        raise
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON: {error.msg} at column {error.colno}; each line must be one complete "
                        f"JSON object", key="line", reason="not valid JSON") from None
    except RecursionError:  # json's parser recurses once per level; thousands of "[" exhaust the stack
        raise DataError(f"nested too deeply: a sample nests a few levels, at most {MAX_NESTING}; this line is "
                        f"garbage or an attack", key="line", reason="nested too deeply") from None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """json's object hook: a key given twice is an error (json.loads would silently keep the last)."""
    record: dict = {}
    for key, value in pairs:
        if key in record:
            raise DataError("duplicate key: given twice in one object; keep one", key=key)
        record[key] = value
    return record


def refuse_constant(name: str) -> float:
    raise DataError(f"not a number: {name} is not valid JSON (Python's json accepts it); write a finite "
                    f"number", key="line", reason="not a number")


def bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise DataError(f"number too long: an integer of {len(digits.lstrip('-'))} digits (at most "
                        f"{MAX_INT_DIGITS}); write a 64-bit integer", key="line", reason="number too long")
    return int(digits)


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DataError(f"not a number: {text[:40]} overflows to infinity; write a finite number", key="line",
                        reason="not a number")
    return value


def check_record(record: Any) -> dict:
    """The whole line: an object, not too deep, with an image and something to learn from, all typed."""
    if not isinstance(record, dict):
        raise DataError(f"not a JSON object: got {json_type(record)}; each line must be one {{...}} sample",
                        key="line", reason="not an object")
    if nesting_depth(record) > MAX_NESTING:
        raise DataError(f"nested too deeply: more than {MAX_NESTING} levels; a sample nests a few", key="line",
                        reason="nested too deeply")
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise DataError(f"missing field: every sample needs {name!r}", key=name)
    if not any(name in record for name in ("qa", "conversation", "caption")):
        raise DataError("missing field: a sample needs at least one of them", key="qa, conversation or caption")
    for name in TEXT_FIELDS:
        if name in record:
            check_text(record[name], name)
    if not record["image"]:
        raise DataError("empty path: give the image file relative to the sample file", key="image",
                        reason="bad path")
    if "seed" in record:
        check_integer(record["seed"], "seed")
    for index, item in enumerate(check_list(record.get("qa", []), "qa")):
        check_qa(item, f"qa[{index}]")
    if "conversation" in record:
        check_conversation(record["conversation"])
    return record


def nesting_depth(value: Any) -> int:
    """How many lists/objects deep ``value`` goes (iterative: a deep value cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_qa(item: Any, key: str) -> None:
    """One qa item: an object with string question and answer; options, if given, hold the answer."""
    check_object(item, key)
    for name in ("question", "answer"):
        if name not in item:
            raise DataError("missing field: each qa item needs 'question' and 'answer'", key=f"{key}.{name}")
    for name in QA_TEXT_FIELDS:
        if name in item:
            check_text(item[name], f"{key}.{name}")
    options = item.get("options")
    if options is None:
        return
    for index, option in enumerate(check_list(options, f"{key}.options")):
        check_text(option, f"{key}.options[{index}]")
    if options and item["answer"] not in options:
        raise DataError(f"bad qa item: answer {item['answer']!r} is not among its options {reprlib.repr(options)}; "
                        f"add it to the options", key=f"{key}.options", reason="answer not in options")


def check_conversation(conversation: Any) -> None:
    """Turns with a role and string content; an optional system turn first, then user, assistant, user, ..."""
    if not check_list(conversation, "conversation"):
        raise DataError("bad conversation: expected a non-empty list of turns", key="conversation")
    expected = "user"
    for index, turn in enumerate(conversation):
        key = f"conversation[{index}]"
        check_object(turn, key)
        for name in ("role", "content"):
            if name not in turn:
                raise DataError(f"missing field: turn {index} needs 'role' and 'content'", key=f"{key}.{name}")
        role = check_text(turn["role"], f"{key}.role")
        check_text(turn["content"], f"{key}.content")
        if "images" in turn:  # the sample's one image is its "image" field, checked and confined above
            raise DataError("not allowed in a sample file: the image comes from the sample's 'image' field; put "
                            "<image_placeholder> in the content where it goes and drop 'images'",
                            key=f"{key}.images", reason="bad conversation")
        if role == "system" and index == 0:
            continue
        if role != expected:
            allowed = f"{expected!r}" + (" (or 'system', first only)" if index == 0 else "")
            raise DataError(f"roles do not alternate: turn {index} is {role!r}, expected {allowed}",
                            key=f"{key}.role")
        expected = "assistant" if expected == "user" else "user"


def check_text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"wrong type: expected a string, got {json_type(value)} ({reprlib.repr(value)})", key=key)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # "\ud800" is valid JSON but not valid Unicode
        raise DataError(f"bad text: character {error.start} is a lone surrogate {value[error.start]!r}, not valid "
                        f"Unicode; fix the \\u escape", key=key) from None
    return value


def check_integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int subclass: true is not a seed
        raise DataError(f"wrong type: expected an integer, got {json_type(value)} ({reprlib.repr(value)})",
                        key=key)
    return value


def check_list(value: Any, key: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"wrong type: expected a list, got {json_type(value)} ({reprlib.repr(value)})", key=key)
    return value


def check_object(value: Any, key: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"wrong type: expected an object {{...}}, got {json_type(value)} ({reprlib.repr(value)})",
                        key=key)
    return value


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages a user who wrote JSON understands."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ============================================================================ the image
def resolve_image_path(value: str, folder: Path, allow_outside_paths: bool) -> Path:
    """The image path of a line, resolved (``..`` and symlinks) and kept inside ``folder`` unless allowed."""
    allow = "pass allow_outside_paths=True (dsvl-lab data check --allow-outside-paths) if you trust the file"
    if Path(value).is_absolute() and not allow_outside_paths:
        raise DataError(f"outside the sample folder: {value!r} is an absolute path; image paths are relative to "
                        f"the sample file's folder {folder}: make it relative, or {allow}", key="image")
    try:
        resolved = (folder / value).resolve()
    except (OSError, ValueError, RuntimeError) as error:  # a NUL byte, a symlink loop
        raise DataError(f"bad path: {value!r} cannot be resolved ({error}); fix the path", key="image") from None
    if not allow_outside_paths and not resolved.is_relative_to(folder):
        # Without this, a downloaded sample file could point at any file the user can read.
        raise DataError(f"outside the sample folder: {value!r} resolves to {resolved}, outside the sample file's "
                        f"folder {folder} (through '..' or a symlink); move the image into the folder, or {allow}",
                        key="image")
    return resolved


def image_header_size(path: Path, max_image_pixels: int) -> tuple[int, int]:
    """Width and height from the file's header (no pixel decoded), refused over ``max_image_pixels``."""
    try:
        if not path.is_file():
            raise DataError(f"missing image: {path} does not exist or is not a file; fix the path", key="image")
        with warnings.catch_warnings():
            # PIL only *warns* between its own limit and twice that; make the warning an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"image too large: {path} is over PIL's pixel limit ({error}); downscale the image",
                        key="image") from None
    except Exception as error:  # PIL raises several types for broken files; the OS for unreadable ones
        raise DataError(f"unreadable image: {path} ({type(error).__name__}: {error}); re-export it as PNG or "
                        f"JPEG", key="image") from None
    width, height = size
    if width * height > max_image_pixels:
        raise DataError(f"image too large: {path} has {width}x{height} = {width * height:,} pixels, over the "
                        f"pixel limit of {max_image_pixels:,} (max_image_pixels, a guard against decompression "
                        f"bombs); downscale the image, or raise max_image_pixels if you trust the file", key="image")
    return size


def decode_image(path: Path, max_image_pixels: int) -> Image.Image:
    """Decode with the processor's safe loader (EXIF rotation, 16-bit, transparency, truncated files)."""
    from ..processor import ProcessorError, load_image  # imports torch: only when images are decoded

    try:
        return load_image(path, max_image_pixels=max_image_pixels)
    except ProcessorError as error:
        raise DataError(f"unreadable image: {error.problem}", key="image") from None


def to_sample(record: dict, image: Image.Image) -> Sample:
    """A checked line as a :class:`Sample` (options default to the answer alone)."""
    qa = [QA(question=item["question"], answer=item["answer"], options=list(item.get("options") or [item["answer"]]),
             kind=item.get("kind", ""), detail=item.get("detail", "coarse")) for item in record.get("qa", [])]
    return Sample(family=record.get("family", "custom"), detail=record.get("detail", "coarse"), image=image,
                  caption=record.get("caption", ""), qa=qa, seed=record.get("seed", -1),
                  meta={"id": record.get("id", "")})


# ============================================================================ writing
def write_jsonl(samples: Iterable[Sample], path: str | os.PathLike, image_folder: str = "images") -> Path:
    """Write samples as PNGs plus one JSONL file; the JSONL appears whole or not at all."""
    path = Path(path)
    (path.parent / image_folder).mkdir(parents=True, exist_ok=True)
    lines = []
    for sample in samples:
        sample_id = f"{sample.family}-{sample.detail}-{sample.seed}"
        relative = f"{image_folder}/{sample_id}.png"
        sample.image.save(path.parent / relative, optimize=True)
        lines.append(json.dumps({
            "id": sample_id, "family": sample.family, "detail": sample.detail, "seed": sample.seed,
            "image": relative, "caption": sample.caption,
            "qa": [{"question": q.question, "answer": q.answer, "options": q.options, "kind": q.kind,
                    "detail": q.detail} for q in sample.qa],
        }, ensure_ascii=False))
    return write_text_atomic(path, "\n".join(lines) + "\n")


# ============================================================================ preview
def contact_sheet(samples: list[Sample], out: str | os.PathLike, columns: int = 4, dpi: int = 100) -> Path:
    """A grid of sample images with their first questions and answers under each, saved as PNG."""
    import textwrap

    # A bare Figure with the Agg canvas: never touches pyplot's global backend (a notebook's
    # inline figures keep working after a preview).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not samples:
        raise ValueError("no samples to preview")
    rows = -(-len(samples) // columns)
    figure = Figure(figsize=(3.2 * columns, 4.2 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, sample in zip(axes.flat, samples):
        axis.imshow(sample.image)
        lines = [f"{sample.family} / {sample.detail} / seed {sample.seed}"]
        for qa in sample.qa[:2]:
            lines += textwrap.wrap(f"Q: {qa.question}", 42) + [f"A: {qa.answer}"]
        axis.set_title("\n".join(lines), fontsize=7, loc="left")
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=dpi)
    return out
