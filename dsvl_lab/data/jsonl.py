"""Samples on disk: one JSON object per line plus PNG images, and a contact-sheet preview.

The format (one line per sample; ``image`` is relative to the JSONL file)::

    {"id": "chart-fine-0", "family": "chart", "detail": "fine", "seed": 0, "image": "images/chart-fine-0.png",
     "caption": "A bar chart ...", "qa": [{"question": "...", "answer": "...", "options": ["...", "..."]}]}

A sample may instead carry a ready conversation (``"conversation": [{"role": "user", ...}, ...]``,
with ``<image_placeholder>`` where the image goes), which must alternate user and assistant turns.

Reading is strict by default: the first bad line raises :class:`DataError` naming the file, the
line and the problem. With ``on_bad_sample="skip"`` bad lines are skipped and counted
(``JsonlSamples.skipped``), so a long run never dies mid-epoch on one broken sample without saying
which one.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from PIL import Image

from ..atomic import write_text_atomic

from .tasks import QA, Sample
from ..errors import InputError

REQUIRED_FIELDS = ("image",)
ON_BAD_SAMPLE = ("raise", "skip")


class DataError(InputError):
    """A bad sample in a data file; the message names the file, the line and the problem."""


@dataclass
class JsonlSamples:
    """The samples of one JSONL file, read and checked line by line."""

    path: Path
    samples: list[Sample] = field(default_factory=list)
    conversations: list[list[dict] | None] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.samples)


def read_jsonl(path: str | os.PathLike, on_bad_sample: str = "raise") -> JsonlSamples:
    """Read and check every line; see the module docstring for the format and the bad-sample policy."""
    if on_bad_sample not in ON_BAD_SAMPLE:
        raise ValueError(f"on_bad_sample must be one of {ON_BAD_SAMPLE}, got {on_bad_sample!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sample file at {path}")
    result = JsonlSamples(path)
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            sample, conversation = parse_line(raw, path.parent)
        except DataError as error:
            problem = f"{path}:{number}: {error}"
            if on_bad_sample == "raise":
                raise DataError(problem + " (fix the line, or pass on_bad_sample='skip' to skip bad samples)") from None
            result.skipped[str(error).split(":")[0]] += 1
            continue
        result.samples.append(sample)
        result.conversations.append(conversation)
    if result.skipped:
        print(f"{path}: skipped {sum(result.skipped.values())} bad sample(s): {dict(result.skipped)}")
    return result


def parse_line(raw: bytes, folder: Path) -> tuple[Sample, list[dict] | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8: byte {error.start} cannot be decoded; re-save the file as UTF-8") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(record, dict):
        raise DataError("not a JSON object: each line must be one {...} sample")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if "qa" not in record and "conversation" not in record and "caption" not in record:
        missing.append("qa, conversation or caption")
    if missing:
        raise DataError(f"missing field: {', '.join(missing)}")
    image = load_sample_image(folder / record["image"])
    conversation = record.get("conversation")
    if conversation is not None:
        check_conversation(conversation)
    qa = [parse_qa(item) for item in record.get("qa", [])]
    sample = Sample(family=record.get("family", "custom"), detail=record.get("detail", "coarse"), image=image,
                    caption=record.get("caption", ""), qa=qa, seed=int(record.get("seed", -1)),
                    meta={"id": record.get("id", "")})
    return sample, conversation


def load_sample_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"missing image: {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except Exception as error:  # PIL raises several types for broken files
        raise DataError(f"unreadable image: {path} ({type(error).__name__}: {error})") from None


def parse_qa(item: dict) -> QA:
    if not isinstance(item, dict) or not {"question", "answer"} <= set(item):
        raise DataError("missing field: each qa item needs 'question' and 'answer'")
    options = item.get("options") or [item["answer"]]
    if item["answer"] not in options:
        raise DataError(f"bad qa item: answer {item['answer']!r} is not among its options {options}")
    return QA(question=item["question"], answer=item["answer"], options=list(options),
              kind=item.get("kind", ""), detail=item.get("detail", "coarse"))


def check_conversation(conversation) -> None:
    """Turns must alternate user, assistant, user, ... (an optional system turn first)."""
    if not isinstance(conversation, list) or not conversation:
        raise DataError("bad conversation: expected a non-empty list of turns")
    turns = [t for t in conversation if not (isinstance(t, dict) and t.get("role") == "system")]
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise DataError(f"missing field: turn {index} needs 'role' and 'content'")
        expected = "user" if index % 2 == 0 else "assistant"
        if turn["role"] != expected:
            raise DataError(f"roles do not alternate: turn {index} is {turn['role']!r}, expected {expected!r}")


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
