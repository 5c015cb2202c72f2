"""Shared pieces of the task families: the sample types, colours, fonts, text drawing and textures.

The one idea every family relies on is the *fine texture* (``apply_texture``): a 1-pixel pattern
(horizontal lines, vertical lines or a checkerboard) added to a flat colour with zero mean. The
low-resolution view of DeepSeek-VL is an antialiased bilinear 4x downscale (256 -> 64 px); its
triangle filter sums the even and the odd pixels of any 8-pixel window with equal weight, so a
period-2 pattern averages to exactly its mean colour. At full resolution the pattern is as plain
as day. The only place it could leak is the region's edge, where the filter sees a part of the
pattern; fading the pattern in over a few pixels (``taper``) keeps that leak to about 1/255 at
most at the tiny and small presets' sizes (data_samples/README.md has the measurements). A 2x
downscale, the micro presets' 64 -> 32 px, cancels period-2 patterns just the same, but their
regions are too small to fade in fully and leak a few levels.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


# ============================================================================ sample types
@dataclass
class QA:
    """One question/answer turn.

    ``options`` always contain ``answer``; ``len(options)`` is the chance denominator for
    multiple-choice scoring. Options are listed in a canonical order (the closed vocabulary's order
    or the items' reading order), never shuffled: shuffle them yourself when you build a
    multiple-choice prompt. ``kind`` names the question type (stable across samples) and
    ``detail`` says which view the answer needs ("coarse": readable at low resolution, "fine":
    needs the high-resolution view).
    """

    question: str
    answer: str
    options: list[str]
    kind: str = ""
    detail: str = "coarse"

    def __post_init__(self) -> None:
        if self.answer not in self.options:
            raise ValueError(f"answer {self.answer!r} is not among the options {self.options}")


@dataclass
class Sample:
    """One generated sample: an RGB square image, a caption and one or more QA turns."""

    family: str
    detail: str
    image: Image.Image
    caption: str
    qa: list[QA]
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)


# ============================================================================ colours
# Named colours for answers. Every channel lies in [50, 205], so a texture of amplitude up to 50
# never clips (clipping would change the mean colour and leak the texture into the low-res view).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 55, 50),
    "green": (55, 150, 65),
    "blue": (55, 95, 200),
    "orange": (205, 130, 50),
    "purple": (135, 70, 170),
    "yellow": (205, 185, 55),
}
COLOR_NAMES = tuple(PALETTE)
TEXTURE_AMPLITUDE = 50

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
INK = (35, 35, 40)  # near-black text
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def pale(name: str) -> tuple[int, int, int]:
    """A palette colour mixed halfway with white: a highlighter or button tint."""
    return tuple((c + 255) // 2 for c in PALETTE[name])


def light_color(rng: random.Random, low: int = 215) -> tuple[int, int, int]:
    """A random pale background colour (every channel >= low)."""
    return tuple(rng.randint(low, 255) for _ in range(3))


# ============================================================================ fonts and text
FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
}
FONT_NAMES = tuple(FONT_FILES)


@lru_cache(maxsize=1)
def font_dir() -> Path:
    """The DejaVu TTFs that ship inside matplotlib (no system fonts needed)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=None)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType font; loading one costs about a millisecond, drawing with it much less."""
    return ImageFont.truetype(str(font_dir() / FONT_FILES[name]), max(4, int(size)))


def text_size(text: str, face: ImageFont.FreeTypeFont) -> tuple[int, int]:
    """Width and height of the ink of ``text``."""
    left, top, right, bottom = face.getbbox(text)
    return right - left, bottom - top


def fit_font(text: str, name: str, max_width: float, max_height: float) -> ImageFont.FreeTypeFont:
    """The largest font of family ``name`` whose rendering of ``text`` fits the box."""
    size = max(4, int(max_height))
    face = font(name, size)
    width, height = text_size(text, face)
    while (width > max_width or height > max_height) and size > 4:
        # Shrink in proportion to the overshoot (one or two steps), then by one point at a time.
        ratio = min(max_width / max(width, 1), max_height / max(height, 1))
        size = max(4, min(size - 1, int(size * ratio)))
        face = font(name, size)
        width, height = text_size(text, face)
    return face


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, face, fill, anchor: str = "la") -> None:
    """Draw text at ``xy`` with a PIL anchor ("mm" = centred, "la" = left/ascender, ...)."""
    draw.text((round(xy[0]), round(xy[1])), text, font=face, fill=fill, anchor=anchor)


def draw_text_in_box(draw: ImageDraw.ImageDraw, box: Sequence[float], text: str, name: str, fill,
                     fill_ratio: float = 0.8) -> ImageFont.FreeTypeFont:
    """Draw ``text`` centred in ``box`` as large as fits ``fill_ratio`` of it; returns the font."""
    x0, y0, x1, y1 = box
    face = fit_font(text, name, (x1 - x0) * fill_ratio, (y1 - y0) * fill_ratio)
    draw_text(draw, ((x0 + x1) / 2, (y0 + y1) / 2), text, face, fill, anchor="mm")
    return face


# ============================================================================ textures
PATTERNS = ("horizontal", "vertical", "checker", "plain")


def pattern_signs(pattern: str, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """+1/-1 per pixel of a 1-pixel pattern (0 for "plain"), in image coordinates from (x0, y0)."""
    ys = np.arange(y0, y0 + height)[:, None]
    xs = np.arange(x0, x0 + width)[None, :]
    if pattern == "horizontal":  # alternate rows
        signs = 1 - 2 * (ys % 2) + 0 * xs
    elif pattern == "vertical":  # alternate columns
        signs = 1 - 2 * (xs % 2) + 0 * ys
    elif pattern == "checker":
        signs = 1 - 2 * ((xs + ys) % 2)
    elif pattern == "plain":
        signs = np.zeros((height, width), dtype=np.int64)
    else:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    return signs.astype(np.int16)


# Texture bookkeeping for dense labels (the SAM pretraining task in dsvl_lab.foundation.sam): while
# ``recording_textures()`` is active, every ``apply_texture`` call appends (pattern, y0, x0, visible)
# where ``visible`` marks the pixels whose value the pattern actually changed. One list per process:
# the generators are not thread-safe anyway (chart uses one matplotlib figure), DataLoader workers
# are processes.
_TEXTURE_LOG: list | None = None


@contextmanager
def recording_textures():
    """Collect the textures the generators draw: ``with recording_textures() as log: generate_sample(...)``."""
    global _TEXTURE_LOG
    outer, _TEXTURE_LOG = _TEXTURE_LOG, []
    try:
        yield _TEXTURE_LOG
    finally:
        _TEXTURE_LOG = outer


def texture_label_map(log: list, size: int) -> np.ndarray:
    """A size x size uint8 map: 0 where no texture is drawn, else 1 + PATTERNS.index(pattern).

    A later texture overwrites an earlier one where they overlap, as it does in the pixels.
    """
    labels = np.zeros((size, size), dtype=np.uint8)
    for pattern, y0, x0, visible in log:
        h, w = visible.shape
        region = labels[y0:y0 + h, x0:x0 + w]
        region[visible] = 1 + PATTERNS.index(pattern)
    return labels


def apply_texture(pixels: np.ndarray, mask: np.ndarray, pattern: str, amplitude: int = TEXTURE_AMPLITUDE,
                  taper: int = 3) -> None:
    """Add a zero-mean 1-px ``pattern`` inside ``mask`` to ``pixels`` (H x W x 3 uint8, in place).

    The pixels under the mask should be one flat colour with every channel in
    [amplitude, 255 - amplitude], so nothing clips and the mean colour stays exact. ``taper``
    fades the pattern in over that many pixels from the mask's edge. Measured worst cases in the
    4x-downscaled view (amplitude 50): hard-edged stripes leak up to 6/255 at their edges, stripes
    with taper 5 about 0.6/255; a checkerboard leaks 0.8/255 hard-edged and 0.3/255 with taper 2
    (its sum across a straight edge cancels, only corners and curves are left).
    """
    if pattern == "plain" or not mask.any():
        return
    rows, cols = np.nonzero(mask)
    # Work on the mask's bounding box (plus the taper margin) only: this keeps it fast.
    pad = taper + 1
    y0, y1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, mask.shape[0])
    x0, x1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, mask.shape[1])
    region = mask[y0:y1, x0:x1]
    weight = region.astype(np.float32)
    if taper > 0:
        # A box blur of the mask is 1 deep inside and ~0.5 on the edge; 2 * blur - 1 therefore ramps
        # from ~0 at the edge to 1 at `taper` pixels inside (a cheap distance-to-edge). Smoothstep
        # rounds the ramp's corners: the smoother the fade, the less of the pattern survives a blur.
        # Zero padding makes the image border count as an edge too (PIL's blur repeats edge pixels).
        padded = np.pad(region.astype(np.uint8) * 255, pad)
        blurred = np.asarray(Image.fromarray(padded).filter(ImageFilter.BoxBlur(taper)), dtype=np.float32)
        ramp = np.clip(2.0 * blurred[pad:-pad, pad:-pad] / 255.0 - 1.0, 0.0, 1.0)
        weight = ramp * ramp * (3.0 - 2.0 * ramp) * region
    # Integer amplitudes: +a and -a on neighbouring pixels cancel exactly, so the mean is untouched.
    delta = np.rint(amplitude * weight).astype(np.int16) * pattern_signs(pattern, x0, y0, x1 - x0, y1 - y0)
    if _TEXTURE_LOG is not None:
        _TEXTURE_LOG.append((pattern, int(y0), int(x0), delta != 0))
    block = pixels[y0:y1, x0:x1].astype(np.int16) + delta[:, :, None]
    pixels[y0:y1, x0:x1] = np.clip(block, 0, 255).astype(np.uint8)


def shape_mask(size: int, shape: str, box: Sequence[int]) -> np.ndarray:
    """Boolean mask (size x size) of a filled shape in ``box`` (see ``draw_shape``)."""
    mask = Image.new("L", (size, size), 0)
    draw_shape(ImageDraw.Draw(mask), shape, box, fill=255)
    return np.asarray(mask) > 127


def rect_mask(size: int, box: Sequence[int]) -> np.ndarray:
    """Boolean mask of the pixels x0 <= x < x1, y0 <= y < y1."""
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# ============================================================================ shapes
SHAPES = ("circle", "square", "triangle", "diamond")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Sequence[int], fill, outline=None) -> None:
    """Draw one of ``SHAPES`` filling the square ``box`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=outline)
    elif shape == "square":
        draw.rectangle(box, fill=fill, outline=outline)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill, outline=outline)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill, outline=outline)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


# ============================================================================ misc helpers
def scaled(size: int, fraction: float, minimum: int = 1) -> int:
    """``fraction`` of the image side in whole pixels, at least ``minimum``."""
    return max(minimum, int(round(size * fraction)))


def choose_answer(rng: random.Random, choices: Sequence[str], force: str | None) -> str:
    """Draw the answer from ``choices``; ``force`` overrides it *after* the draw.

    Drawing first keeps the random stream identical, so a forced sample differs from the natural
    one only in the answer (the leak tests compare such pairs).
    """
    drawn = rng.choice(list(choices))
    if force is None:
        return drawn
    if force not in choices:
        raise ValueError(f"force_answer {force!r} is not a possible answer; expected one of {list(choices)}")
    return force


def options_with(answer: str, vocabulary: Sequence[str], rng: random.Random, k: int = 4) -> list[str]:
    """``answer`` plus k-1 distractors from ``vocabulary``, listed in vocabulary order."""
    others = [v for v in vocabulary if v != answer]
    picked = set(rng.sample(others, min(k - 1, len(others)))) | {answer}
    return [v for v in vocabulary if v in picked]


def add_noise(pixels: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian pixel noise (a "noisy background"), clipped to uint8."""
    noise = rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return np.clip(pixels.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def numpy_rng(rng: random.Random) -> np.random.Generator:
    """A numpy Generator seeded from the sample's own ``random.Random`` (never the global RNG)."""
    return np.random.default_rng(rng.getrandbits(64))


def with_article(phrase: str) -> str:
    """'a red circle', 'an orange square'."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def count_phrase(count: int, noun: str) -> str:
    """'one bar', 'three bars'."""
    word = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    return f"{word} {noun}{'' if count == 1 else 's'}"


# A 5 x 7 bitmap font (rows top to bottom, '#' = ink) for the hidden words of the OCR family's
# security print: its strokes are axis-aligned rectangles, the shape the checkerboard fills best.
BITMAP_FONT = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "C": (".####", "#....", "#....", "#....", "#....", "#....", ".####"),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "I": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "#####"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "V": ("#...#", "#...#", "#...#", "#...#", ".#.#.", ".#.#.", "..#.."),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
}


def bitmap_text_mask(size: int, text: str, x0: int, y0: int, cell: int) -> np.ndarray:
    """Mask of ``text`` in the 5 x 7 bitmap font, each font cell ``cell`` x ``cell`` pixels."""
    mask = np.zeros((size, size), dtype=bool)
    for index, char in enumerate(text):
        rows = BITMAP_FONT[char]
        left = x0 + index * 6 * cell  # 5 cells of glyph + 1 of spacing
        for r, row in enumerate(rows):
            for c, bit in enumerate(row):
                if bit == "#":
                    ys, xs = y0 + r * cell, left + c * cell
                    mask[ys:ys + cell, xs:xs + cell] = True
    return mask


def bitmap_text_width(text: str, cell: int) -> int:
    """Pixel width of ``text`` in the bitmap font."""
    return (6 * len(text) - 1) * cell
