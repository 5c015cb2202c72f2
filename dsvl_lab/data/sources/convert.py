"""Write the same samples in each format a source reads: our JSONL, LLaVA JSON, ``datasets``, parquet.

For the tests (the same 16 samples in three formats must give identical batches), the README's
walk-through (the shipped photo set in every format) and users moving their data between tools.
What is converted is the sample's *conversation*: a sample file's row that has none gets one built
from its caption and questions (``as_conversation``), so every format holds the same text.

* ``llava``: a ``.json`` list (``.jsonl`` for one row per line) of ``{"id", "image", "conversations"}``;
  image paths stay relative to the input's folder, so pass that folder as the source's ``image_folder``;
* ``jsonl``: our sample format with a ``conversation`` field (paths as above);
* ``hf``: a ``datasets`` folder (``save_to_disk``) with LLaVA's columns and the images *embedded*
  as an ``Image`` column: the folder stands alone;
* ``parquet``: the same table in one parquet file.

Every file is written atomically: a crash leaves the old file or the new one, never half of either.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from ...atomic import write_text_atomic
from ..jsonl import JsonlReader

FORMATS = ("jsonl", "llava", "hf", "parquet")
DESCRIBE = "Describe the image."  # the user turn a caption answers, when a row has no conversation


def as_conversation(record: dict) -> list[dict]:
    """A sample-file row's conversation, or one built from its caption then its questions."""
    if record.get("conversation"):
        return [dict(turn) for turn in record["conversation"]]
    turns = []
    if record.get("caption"):
        turns += [{"role": "user", "content": DESCRIBE}, {"role": "assistant", "content": record["caption"]}]
    for item in record.get("qa", []):
        turns += [{"role": "user", "content": item["question"]}, {"role": "assistant", "content": item["answer"]}]
    turns[0]["content"] = "<image_placeholder>" + turns[0]["content"]
    return turns


def to_llava(record: dict, index: int) -> dict:
    """Our row -> LLaVA's: roles to human / gpt, ``<image_placeholder>`` to ``<image>\\n``."""
    speaker = {"user": "human", "assistant": "gpt", "system": "system"}
    turns = [{"from": speaker[turn["role"]], "value": turn["content"].replace("<image_placeholder>", "<image>\n")}
             for turn in as_conversation(record)]
    return {"id": str(record.get("id", index)), "image": record["image"], "conversations": turns}


def read_sample_rows(path: str | os.PathLike) -> list[dict]:
    """The checked rows of one of our sample files (strict: the first bad line raises, naming file:line)."""
    return [line.record for line in JsonlReader(path)]


def write_llava(records: Iterable[dict], out: Path) -> Path:
    rows = [to_llava(record, index) for index, record in enumerate(records)]
    if out.suffix == ".jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    write_text_atomic(out, text)
    return out


def write_sample_jsonl(records: Iterable[dict], out: Path) -> Path:
    rows = [{"id": str(record.get("id", index)), "image": record["image"], "conversation": as_conversation(record)}
            for index, record in enumerate(records)]
    write_text_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return out


def write_table(records: Iterable[dict], out: Path, image_folder: Path, kind: str) -> Path:
    """LLaVA's columns with the image bytes embedded, as a ``datasets`` folder or a parquet file."""
    import datasets

    rows = [to_llava(record, index) for index, record in enumerate(records)]
    for row in rows:
        row["image"] = {"bytes": (image_folder / row["image"]).read_bytes(), "path": Path(row["image"]).name}
    features = datasets.Features({
        "id": datasets.Value("string"), "image": datasets.Image(decode=False),
        "conversations": datasets.List({"from": datasets.Value("string"), "value": datasets.Value("string")})})
    table = datasets.Dataset.from_list(rows, features=features)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # then one rename: atomic
    try:
        target = scratch / ("table.parquet" if kind == "parquet" else "table")
        table.to_parquet(str(target)) if kind == "parquet" else table.save_to_disk(str(target))
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(target, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def convert(path: str | os.PathLike, to: str, out: str | os.PathLike) -> Path:
    """Convert one of our sample files (``dsvl_lab.data.jsonl``) into format ``to`` at ``out``."""
    if to not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {to!r}")
    path, out = Path(path), Path(out)
    records = read_sample_rows(path)
    if to == "llava":
        return write_llava(records, out)
    if to == "jsonl":
        return write_sample_jsonl(records, out)
    return write_table(records, out, path.parent, to)
