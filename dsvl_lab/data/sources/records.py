"""Rows of any format -> one checked record, so the same sample gives the same batch from any file.

Three row shapes are understood, wherever they come from (JSONL, a JSON list, ``datasets``, parquet):

* LLaVA / ShareGPT4V: ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
  {"from": "gpt", "value": "..."}]}``. Roles ``human`` / ``gpt`` / ``system`` become ``user`` /
  ``assistant`` / ``system``, and LLaVA's ``<image>`` tag becomes our ``<image_placeholder>``
  (with the newline LLaVA puts beside it) — at the start of the first user turn when a row has an
  image but no tag, as LLaVA's own loader does.
* our sample format (``dsvl_lab.data.jsonl``): ``image`` plus ``caption``, ``qa`` and/or ``conversation``.
* text: ``{"text": "..."}`` (the column named by the source's ``text_field``), language-only.

Every image row is then checked by the same rules as a sample file (``jsonl.lines.check_record``:
types, roles that alternate, an answer among its options, ...), its image path confined to the
source's image folder; a problem is a :class:`DataError` naming ``file:line`` and the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonl.errors import DataError
from ..jsonl.images import resolve_image_path
from ..jsonl.lines import check_object, check_record, check_text

PLACEHOLDER = "<image_placeholder>"
LLAVA_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
LLAVA_TAG = "<image>"


@dataclass(frozen=True)
class ImageRecord:
    """A checked multimodal row: its image (a resolved path, or encoded bytes) and its text."""

    where: str                           # "file:line"
    image: Path | bytes
    conversation: list[dict] | None      # user/assistant turns, <image_placeholder> where the image goes
    caption: str | None
    qa: list[dict]


def text_of(row: Any, where: str, text_field: str = "text") -> str:
    """The document of a language-only row: a non-empty string in ``text_field``."""
    try:
        row = check_object(row, "line")
        if text_field not in row:
            raise DataError(f"missing field: a text row needs {text_field!r}", key=text_field)
        text = check_text(row[text_field], text_field)
        if not text.strip():
            raise DataError("empty text: nothing to learn from", key=text_field, reason="empty text")
        return text
    except DataError as error:
        raise error.at(where) from None


def image_record(row: Any, where: str, image_folder: Path, allow_outside_paths: bool = False) -> ImageRecord:
    """A row in any image format -> a checked :class:`ImageRecord` (raises DataError with ``where``)."""
    try:
        row = check_object(row, "line")
        image = row.get("image")
        embedded = embedded_bytes(image)
        sample = from_llava(row) if "conversations" in row else dict(row)
        # check_record reads "image" as a path; an embedded image is checked as bytes when decoded.
        sample["image"] = "embedded" if embedded is not None else image
        sample = check_record({key: value for key, value in sample.items() if value is not None})
        path = embedded if embedded is not None else resolve_image_path(sample["image"], image_folder,
                                                                         allow_outside_paths)
        return ImageRecord(where, path, sample.get("conversation"), sample.get("caption"), sample.get("qa", []))
    except DataError as error:
        raise error.at(where) from None


def embedded_bytes(image: Any) -> bytes | None:
    """The encoded image of a ``datasets`` Image column (``{"bytes": ..., "path": ...}``), else None."""
    if isinstance(image, dict) and isinstance(image.get("bytes"), (bytes, bytearray)):
        return bytes(image["bytes"])
    return None


def from_llava(row: dict) -> dict:
    """A LLaVA row -> our sample format (``conversation`` with roles and ``<image_placeholder>``)."""
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise DataError("bad conversation: expected a non-empty list of turns", key="conversations")
    conversation = []
    for index, turn in enumerate(turns):
        key = f"conversations[{index}]"
        check_object(turn, key)
        for name in ("from", "value"):
            if name not in turn:
                raise DataError("missing field: a LLaVA turn needs 'from' and 'value'", key=f"{key}.{name}")
        speaker = check_text(turn["from"], f"{key}.from")
        if speaker not in LLAVA_ROLES:
            raise DataError(f"unknown speaker {speaker!r}: LLaVA turns are 'human', 'gpt' or 'system'",
                            key=f"{key}.from", reason="bad conversation")
        content = check_text(turn["value"], f"{key}.value")
        conversation.append({"role": LLAVA_ROLES[speaker], "content": llava_tag_to_placeholder(content)})
    if row.get("image") is not None and not any(PLACEHOLDER in turn["content"] for turn in conversation):
        first_user = next((t for t in conversation if t["role"] == "user"), None)
        if first_user is not None:
            first_user["content"] = PLACEHOLDER + first_user["content"]
    image = row.get("image")
    return {"id": row.get("id"), "image": image, "conversation": conversation}


def llava_tag_to_placeholder(text: str) -> str:
    """LLaVA writes ``<image>\\n`` before (or ``\\n<image>`` after) the question; we write the placeholder alone."""
    return text.replace(LLAVA_TAG + "\n", PLACEHOLDER).replace("\n" + LLAVA_TAG, PLACEHOLDER).replace(
        LLAVA_TAG, PLACEHOLDER)


def row_modality(columns: list[str], text_field: str) -> str:
    """What a table's columns feed: "text" for a text column without an image one, else "image"."""
    if text_field in columns and "image" not in columns:
        return "text"
    if "image" in columns:
        return "image"
    raise DataError(f"cannot tell what the rows hold from their columns {columns}: an image source needs an "
                    f"'image' column, a text source a {text_field!r} column", key="columns")
