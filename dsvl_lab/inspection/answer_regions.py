"""Where the answer is drawn in a fine task image: the evidence the high-res tower is there for.

* :func:`answer_variants`: the same fine sample once per possible answer (``force_answer``);
* :func:`answer_masks`: the pixels that change with the answer;
* :func:`answer_region`: a box around them to zoom on (what
  :func:`~dsvl_lab.inspection.images.plot_detail_views` shows at both resolutions).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data.tasks import generate_sample


def answer_variants(family: str, seed: int, image_size: int) -> dict[str, Any]:
    """The fine sample ``seed`` once per possible answer of its first question: {answer: Sample}.

    Every other random choice (layout, colours, text) is shared, so the images differ only where
    the answer is drawn (``generate_sample(..., force_answer=...)``).
    """
    natural = generate_sample(family, seed, detail="fine", image_size=image_size)
    return {answer: natural if answer == natural.qa[0].answer else
            generate_sample(family, seed, detail="fine", image_size=image_size, force_answer=answer)
            for answer in natural.qa[0].options}


def answer_masks(variants: dict[str, Any], answer: str) -> tuple[np.ndarray, np.ndarray]:
    """(union, intersection) of the pixels where ``variants[answer]`` differs from each other variant.

    The union is everywhere the answer is drawn (e.g. all four checkboxes of a form); the
    intersection is where *this* answer differs from every other one (the ticked box).
    """
    base = np.asarray(variants[answer].image, dtype=np.int16)
    union = np.zeros(base.shape[:2], dtype=bool)
    intersection = np.ones(base.shape[:2], dtype=bool)
    for other, sample in variants.items():
        if other == answer:
            continue
        changed = (np.asarray(sample.image, dtype=np.int16) != base).any(axis=2)
        union |= changed
        intersection &= changed
    if len(variants) < 2:
        intersection[:] = False
    return union, intersection


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def answer_region(variants: dict[str, Any], answer: str, factor: int = 4, max_fraction: float = 0.6,
                  margin: int = 4, min_fraction: float = 0.125) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1) in high-res pixels around the evidence of ``answer``, for a zoom.

    The box holds every pixel that changes with the answer (all the places an answer can be
    drawn: the four radio buttons of a screen) when that area is small (each side at most
    ``max_fraction`` of the image); otherwise the pixels that only this answer changes (the one
    hatched bar of a chart) or, if there are none, the smallest change to another answer (one
    striped shape more or less). It gets ``margin``
    pixels of context, at least ``min_fraction`` of the image a side, and edges on multiples of
    ``factor`` (high-res pixels per low-res pixel), so the same box is whole pixels in the low-res view.
    """
    union, intersection = answer_masks(variants, answer)
    size = union.shape[0]
    box = _bbox(union)
    if box is None:
        raise ValueError("the variants are identical: no pixel depends on the answer")
    if max(box[2] - box[0], box[3] - box[1]) > max_fraction * size:
        box = _bbox(intersection) or _smallest_change(variants, answer) or box
    x0, y0, x1, y1 = box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
    smallest = int(round(min_fraction * size))
    for lo, hi in ((0, 2), (1, 3)):
        coords = [x0, y0, x1, y1]
        grow = smallest - (coords[hi] - coords[lo])
        if grow > 0:
            coords[lo] -= grow // 2
            coords[hi] += grow - grow // 2
        x0, y0, x1, y1 = coords
    snap = lambda v, up: int(-(-v // factor) * factor if up else (v // factor) * factor)  # noqa: E731
    x0, y0 = max(snap(x0, False), 0), max(snap(y0, False), 0)
    x1, y1 = min(snap(x1, True), size), min(snap(y1, True), size)
    return x0, y0, x1, y1


def _smallest_change(variants: dict[str, Any], answer: str) -> tuple[int, int, int, int] | None:
    """Bounding box of the smallest non-empty difference between ``answer`` and one other variant."""
    base = np.asarray(variants[answer].image, dtype=np.int16)
    boxes = []
    for other, sample in variants.items():
        changed = (np.asarray(sample.image, dtype=np.int16) != base).any(axis=2)
        if other != answer and changed.any():
            boxes.append((int(changed.sum()), _bbox(changed)))
    return min(boxes)[1] if boxes else None
