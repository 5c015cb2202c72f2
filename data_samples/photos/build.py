"""Build the small real-photo sample set in ``data_samples/photos/``.

What it does: for every entry of the hand-written ``text.yaml`` (next to this file) it loads the
named sample image from scikit-image's ``skimage.data``, cuts the entry's crop out of it (if it
has one), converts it to RGB, shrinks it so that its longest side is at most 320 px, and saves it
as ``images/<id>.jpg`` (JPEG, quality 85). Then it writes ``photos.jsonl``: one sample per line,
sorted by id, in the project's sample-file format, with the caption and questions of
``text.yaml`` and a ready conversation (describe the image, then the first question).

The captions and questions are written by hand in ``text.yaml``; this script only copies them.

Where the images come from: the sample data that ships inside the scikit-image package
(``skimage.data``; no download). Their licences, as scikit-image states them in the docstrings
of ``skimage.data`` (``skimage/data/_fetchers.py``), are public domain or CC0 for most images
and "no known copyright restrictions" for ``coins``, ``immunohistochemistry`` and ``text``;
``moon`` and ``page`` carry no statement of their own and fall under scikit-image's package
licence (BSD-3-Clause, ``Files: *``). ``README.md`` lists each image with its licence.

How to rerun (from the repository root, in an environment with scikit-image, Pillow and PyYAML)::

    python data_samples/photos/build.py

The output is deterministic: the same library versions give the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import skimage.data
import yaml
from PIL import Image

HERE = Path(__file__).resolve().parent
TEXT = HERE / "text.yaml"
IMAGES = HERE / "images"
JSONL = HERE / "photos.jsonl"
MAX_SIDE = 320      # longest side of a saved image, in pixels
JPEG_QUALITY = 85


def load_photo(source: str, crop: list[int] | None) -> Image.Image:
    """The skimage.data image ``source``, cropped to ``[left, top, right, bottom]``, as RGB."""
    image = Image.fromarray(np.asarray(getattr(skimage.data, source)()))
    if crop is not None:
        left, top, right, bottom = crop
        if not (0 <= left < right <= image.width and 0 <= top < bottom <= image.height):
            # PIL would pad a crop outside the image with black instead of refusing it
            raise ValueError(f"crop {crop} of {source} is not inside its {image.width}x{image.height} pixels")
        image = image.crop((left, top, right, bottom))
    return image.convert("RGB")


def shrink(image: Image.Image) -> Image.Image:
    """Downscale (never upscale) so the longest side is at most MAX_SIDE."""
    scale = MAX_SIDE / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def check_entry(name: str, entry: dict) -> None:
    """Refuse an entry of text.yaml that would make a bad sample (caught here, not at training time)."""
    if not isinstance(entry.get("caption"), str) or not entry["caption"].strip():
        raise ValueError(f"{name}: no caption")
    qa = entry.get("qa") or []
    if not 2 <= len(qa) <= 3:
        raise ValueError(f"{name}: expected 2 or 3 questions, got {len(qa)}")
    if not any("options" in item for item in qa):
        raise ValueError(f"{name}: at least one question needs options")
    for item in qa:
        texts = [item.get("question"), item.get("answer"), *item.get("options", [])]
        if not all(isinstance(text, str) and text for text in texts):  # YAML reads a bare yes as True, 4 as 4
            raise ValueError(f"{name}: question, answer and options must be quoted strings: {item}")
        if "options" in item and item["answer"] not in item["options"]:
            raise ValueError(f"{name}: answer {item['answer']!r} is not among {item['options']}")


def record(name: str, entry: dict) -> dict:
    """One line of photos.jsonl (key order as in the project's sample files)."""
    qa = []
    for item in entry["qa"]:
        one = {"question": item["question"], "answer": item["answer"]}
        if "options" in item:
            one["options"] = list(item["options"])
        qa.append(one)
    caption = entry["caption"].strip()
    conversation = [
        {"role": "user", "content": "<image_placeholder>Describe the image."},
        {"role": "assistant", "content": caption},
        {"role": "user", "content": qa[0]["question"]},
        {"role": "assistant", "content": qa[0]["answer"]},
    ]
    return {"id": name, "image": f"images/{name}.jpg", "family": "photo", "caption": caption, "qa": qa,
            "conversation": conversation}


def main() -> None:
    entries = yaml.safe_load(TEXT.read_text(encoding="utf-8"))
    IMAGES.mkdir(exist_ok=True)
    for stale in IMAGES.glob("*.jpg"):  # an id renamed or dropped in text.yaml leaves no old image behind
        if stale.stem not in entries:
            stale.unlink()
    lines = []
    for name in sorted(entries):
        entry = entries[name]
        check_entry(name, entry)
        image = shrink(load_photo(entry["source"], entry.get("crop")))
        image.save(IMAGES / f"{name}.jpg", "JPEG", quality=JPEG_QUALITY)
        lines.append(json.dumps(record(name, entry), ensure_ascii=False))
    JSONL.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} images to {IMAGES} and {JSONL}")


if __name__ == "__main__":
    main()
