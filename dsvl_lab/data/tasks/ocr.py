"""OCR family: rendered words and numbers in several fonts, sizes and colours, plain or noisy background.

Coarse: a large word (a quarter of the image high at most) at the top left, in Title case, in one of
two bold DejaVu faces and a named colour, and below it a large 2-digit number in any face, size,
place and colour, on a plain, two-tone or noisy background. Questions: what word is written, what number
is written, what colour is the word.

Why so regular a word? A tiny model must learn to read it within the CPU demo's few hundred
samples per family. Measured (linear probes of the frozen tiny foundation towers, 640 training and
160 held-out images, 8 words): with six faces, three casings, three alignments and the word in
either band, the word probes at SAM 0.44 / SigLIP 0.23 (flattened tokens; chance 0.125); with the
word top-left in Title case and the two bold faces, but its place and size still jittered, SAM 0.86 /
SigLIP 0.64; fixed as now, SAM 1.00 / SigLIP 0.99, as the document heading (which the demo reads)
does. The variety now lives in the number line.

Fine: the big word is still there, and below or above it a *security panel*: a flat tinted box in
which one of four words (VOID, PAID, COPY, FREE) is written in texture only, its strokes filled
with a 1-pixel checkerboard of the panel's own colour. Cheque "VOID pantographs" work the same way
(a pattern a copier cannot reproduce). At low resolution the checkerboard averages to the panel
colour, so every panel looks the same; at full resolution the word is plain to read. The panel's
size, place and colour do not depend on the word, and all four words have four letters.

Why a fixed panel? The word has to be read from its letters' shapes, not from where texture is
(what the other fine families ask). Measured on the tiny foundation SAM (2026-11-30; 250 training
samples, about what each miniature stage shows of fine OCR, 200 held-out): with the panel jittered
over about 2.4 x 0.8 of the final 32-px tokens, a linear probe of the final 8x8 SAM tokens reads the
hidden word at 0.63 (0.89 from 800 samples; 0.90 when told where the text is); with the panel at one
place, 1.00 from the same 250. The tokens keep the letters; what a few hundred samples cannot teach is
reading them at every offset. Before this change the hybrid demo answered fine OCR at chance (0.30).

Why not simply small text? Measured on this machine (see the issue): words drawn 9-11 px high
stay partly readable after a 4x downscale, because word length and ink shape survive the blur.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from .common import (COLOR_NAMES, FONT_NAMES, PALETTE, QA, add_noise, apply_texture, bitmap_text_mask,
                     bitmap_text_width, choose_answer, draw_text, fit_font, light_color, numpy_rng, options_with,
                     scaled)

WORDS = ("cat", "sun", "book", "tree", "house", "music", "garden", "window")
NUMBERS = tuple(str(n) for n in range(10, 30))
HIDDEN_WORDS = ("VOID", "PAID", "COPY", "FREE")
BACKGROUNDS = ("plain", "two-tone", "noisy")


def _background(rng: random.Random, size: int, kind: str) -> np.ndarray:
    """A light background: one colour, two horizontal bands, or one colour with pixel noise."""
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = light_color(rng, 200)
    if kind == "two-tone":
        pixels[rng.randint(size // 3, 2 * size // 3):] = light_color(rng, 200)
    elif kind == "noisy":
        pixels = add_noise(pixels, numpy_rng(rng), sigma=rng.uniform(8, 20))
    return pixels


WORD_FACES = ("sans-bold", "serif-bold")  # the big word's faces (the number line uses all six)


ALIGNMENTS = ("l", "m", "r")  # left, centre, right: PIL anchor letters


def _draw_line(draw: ImageDraw.ImageDraw, text: str, face_name: str, box, color, align: str = "l") -> None:
    """Draw ``text`` as large as ``box`` allows, aligned (one of ``ALIGNMENTS``) inside it."""
    x0, y0, x1, y1 = box
    face = fit_font(text, face_name, x1 - x0, y1 - y0)
    x = {"l": x0, "m": (x0 + x1) / 2, "r": x1}[align]
    draw_text(draw, (x, (y0 + y1) / 2), text, face, color, anchor=align + "m")


def generate(rng: random.Random, detail: str, size: int, force_answer: str | None):
    """Draw one OCR image; returns (image, caption, qa, meta)."""
    fine = detail == "fine"
    background = rng.choice(BACKGROUNDS)
    pixels = _background(rng, size, background)
    word, number = rng.choice(WORDS), rng.choice(NUMBERS)
    color, face_name = rng.choice(COLOR_NAMES), rng.choice(WORD_FACES)
    printed = word.title()
    margin = scaled(size, 0.06)
    line_height = scaled(size, rng.uniform(0.2, 0.26))  # font size >= 1/5 of the image: readable at 1/4 scale

    # Two bands: the word in a fixed top one (as a page heading), the number (coarse) or the security
    # panel (fine) below, where place and size vary.
    word_height = scaled(size, 0.24)
    other_y0 = size // 2 + rng.randint(0, scaled(size, 0.1))

    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    _draw_line(draw, printed, face_name, (margin, margin, size - margin, margin + word_height), PALETTE[color])
    meta = {"word": word, "printed": printed, "font": face_name, "color": color, "background": background}

    if not fine:
        number_color = rng.choice(COLOR_NAMES)
        _draw_line(draw, number, rng.choice(FONT_NAMES), (margin, other_y0, size - margin, other_y0 + line_height),
                   PALETTE[number_color], align=rng.choice(ALIGNMENTS))
        qa = [QA("What word is written in the image?", word, options_with(word, WORDS, rng), kind="read_word",
                 detail="coarse"),
              QA("What number is written in the image?", number, options_with(number, NUMBERS, rng),
                 kind="read_number", detail="coarse"),
              QA("What colour is the word?", color, options_with(color, COLOR_NAMES, rng), kind="text_color",
                 detail="coarse")]
        caption = (f"The word \"{printed}\" in {color} letters and the number {number} in {number_color} "
                   f"on a {background} background.")
        meta.update(number=number, number_color=number_color)
        return image, caption, qa, meta

    # Fine: the security panel. Its geometry and colour are drawn before (and independently of)
    # the hidden word, so every answer shares them.
    cell = max(2, min(int(size * 0.62) // 23, int(size * 0.24) // 7))  # bitmap-font cell in pixels
    text_w, text_h = bitmap_text_width("VOID", cell), 7 * cell
    pad = max(2, cell)
    panel_w, panel_h = text_w + 2 * pad, text_h + 2 * pad
    rng.randint(margin, size - margin - panel_w)  # drawn and discarded: every later draw stays as it was
    # A fixed place, as the big word's (see the module docstring: "Why a fixed panel?").
    px0 = (size - panel_w) // 2
    py0 = min(size // 2 + scaled(size, 0.03), size - margin - panel_h)
    panel_color = tuple(rng.randint(120, 190) for _ in range(3))  # within [50, 205]: the texture never clips
    draw.rectangle((px0 - 1, py0 - 1, px0 + panel_w, py0 + panel_h), fill=panel_color, outline=(90, 90, 90))
    hidden = choose_answer(rng, HIDDEN_WORDS, force_answer)
    pixels = np.array(image)
    mask = bitmap_text_mask(size, hidden, px0 + pad, py0 + pad, cell)
    # The checkerboard needs no fade-in: at a straight edge its sum across the filter cancels.
    apply_texture(pixels, mask, "checker", taper=1)
    qa = [QA("What word is hidden in the security print of the panel?", hidden, list(HIDDEN_WORDS),
             kind="hidden_word", detail="fine")]
    caption = (f"The word \"{printed}\" in {color} letters on a {background} background, with a security "
               f"panel whose fine print reads {hidden}.")
    meta.update(hidden=hidden, panel=(px0, py0, panel_w, panel_h), cell=cell)
    return Image.fromarray(pixels), caption, qa, meta
