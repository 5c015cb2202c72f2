"""Procedural task families: the workbench's "data world".

DeepSeek-VL trains on web screenshots, documents and OCR, charts, scene text and knowledge. Each
family here draws a miniature version of one of those kinds of image, procedurally, from a seed:
unlimited in size and exactly reproducible. A sample is an RGB square image, a one-sentence caption
(for contrastive and captioning pretraining) and one or more question/answer turns.

    >>> from dsvl_lab.data.tasks import generate_sample
    >>> s = generate_sample("chart", seed=0, detail="fine")
    >>> s.image.size, s.qa[0].detail, s.qa[0].answer in s.qa[0].options
    ((256, 256), 'fine', True)

Families (one module each): ``chart`` (bar/line/pie charts, matplotlib), ``ocr`` (rendered words
and numbers), ``doc`` (page layouts with a table), ``screen`` (UI screenshots), ``scene``
(coloured shapes).

The ``detail`` knob is the point of the hybrid encoder:
- ``coarse``: the answer is readable in the low-resolution view (big words, colours, bar heights);
- ``fine``: the answer lives in 1-pixel structure (hatching, dithered check marks, a word written
  in texture) that the low-res view's 4x antialiased downscale erases completely, while every
  coarse cue (colour, mean brightness, size, position, length) is the same for every answer.
  ``python -m dsvl_lab.data.detail_check`` proves it with classifiers (see data_samples/README.md).

Samples of a ``fine`` detail level carry only fine questions and ``coarse`` samples only coarse
ones; ``qa[0]`` is always the family's signature question of that level: the same ``QA.kind`` in
every sample, and an answer that depends on the image alone (no colour or name in the question).

Speed: 1,000 samples of any family take 1-14 s on one core (charts are the slowest; see
``benchmarks/bench_tasks.py``). Chart samples share one matplotlib Figure per process, so generate
in several processes (DataLoader workers), not threads.
"""
from __future__ import annotations

import importlib
import random
from typing import Iterator

from .common import QA, Sample

FAMILIES = ("chart", "ocr", "doc", "screen", "scene")
DETAILS = ("coarse", "fine")
MIN_IMAGE_SIZE = 64

__all__ = ["FAMILIES", "DETAILS", "QA", "Sample", "generate_sample", "generate_samples", "iter_samples"]


def _check_args(family: str, detail: str, image_size: int) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; choose one of {', '.join(FAMILIES)}")
    if detail not in DETAILS:
        raise ValueError(f"unknown detail level {detail!r}; choose 'coarse' or 'fine'")
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE} (got {image_size!r}); "
                         "smaller images cannot hold the families' layouts")


def _family_module(family: str):
    # Imported on first use: the chart family pulls in matplotlib, which the others do not need.
    return importlib.import_module(f"{__name__}.{family}")


def generate_sample(family: str, seed: int, detail: str = "coarse", image_size: int = 256, *,
                    force_answer: str | None = None) -> Sample:
    """Generate one sample; the same arguments always give identical pixels and text.

    ``force_answer`` (fine samples only; for tests and demos) overrides the answer of ``qa[0]``
    while keeping every other random choice, so two samples that differ only in the answer can be
    compared: the leak test of the fine designs.
    """
    _check_args(family, detail, image_size)
    if force_answer is not None and detail != "fine":
        raise ValueError("force_answer is only supported for detail='fine' samples")
    # A private RNG per sample, seeded from a string (stable across runs and PYTHONHASHSEED);
    # family and detail are part of the seed so that their streams are independent.
    rng = random.Random(f"dsvl_lab.tasks/{family}/{detail}/{int(seed)}")
    image, caption, qa, meta = _family_module(family).generate(rng, detail, image_size, force_answer)
    if image.mode != "RGB" or image.size != (image_size, image_size):
        raise AssertionError(f"{family} produced a {image.mode} image of size {image.size}")
    return Sample(family=family, detail=detail, image=image, caption=caption, qa=qa, seed=int(seed), meta=meta)


def iter_samples(family: str, n: int, start_seed: int = 0, detail: str = "coarse",
                 image_size: int = 256) -> Iterator[Sample]:
    """Samples with seeds start_seed, start_seed + 1, ..., one at a time."""
    _check_args(family, detail, image_size)
    for seed in range(start_seed, start_seed + n):
        yield generate_sample(family, seed, detail=detail, image_size=image_size)


def generate_samples(family: str, n: int, start_seed: int = 0, detail: str = "coarse",
                     image_size: int = 256) -> list[Sample]:
    """A list of ``n`` samples with consecutive seeds (see ``generate_sample``)."""
    if n < 0:
        raise ValueError(f"n must be >= 0 (got {n})")
    return list(iter_samples(family, n, start_seed, detail, image_size))
