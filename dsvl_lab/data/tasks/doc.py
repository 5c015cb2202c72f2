"""Document family: page-like layouts with a heading, a paragraph and a table (and a form line).

Coarse: a bold heading a sixth of the page high, a few lines of small body text, and a table of
2-5 rows (item, quantity, price) with one row highlighted in colour. Questions: the heading, the
number of table rows, which row is highlighted.

Fine: the same page (2-4 table rows) with a form line underneath, "Paid by: [] Cash [] Card
[] Cheque [] Bank", four identical boxes at fixed columns. The ticked box is filled with a
1-pixel checkerboard (a dither), the others with flat grey of the same mean, so the four boxes are
identical in the low-res view. Question: which payment method is ticked. A real tick drawn in ink
would darken its box and show at low resolution; the dither is the leak-free stand-in.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from .common import (COLOR_NAMES, INK, ORDINALS, QA, apply_texture, choose_answer, draw_text,
                     fit_font, font, options_with, pale, rect_mask, scaled)

HEADINGS = ("Report", "Invoice", "Agenda", "Budget", "Notes", "Menu", "Summary", "Schedule")
ITEMS = ("Paper", "Pens", "Coffee", "Chairs", "Lamps", "Tape", "Books", "Cables", "Desks", "Ink")
BODY_WORDS = ("the", "team", "will", "review", "plan", "for", "next", "week", "and", "send", "a", "short",
              "update", "on", "costs", "all", "items", "are", "listed", "below", "with", "prices", "in", "euro")
PAYMENTS = ("Cash", "Card", "Cheque", "Bank")
BOX_GREY = (150, 150, 150)  # the boxes' fill; +-50 dither stays inside [0, 255]


def _body_text(draw: ImageDraw.ImageDraw, rng: random.Random, size: int, x0: int, y0: int, width: int,
               lines: int) -> int:
    """A few lines of small filler text; returns the y below them."""
    face = font("serif", scaled(size, 0.045, 5))
    step = scaled(size, 0.06, 6)
    for line in range(lines):
        words, text = [], ""
        while True:
            candidate = " ".join(words + [rng.choice(BODY_WORDS)])
            if face.getlength(candidate) > width:
                break
            words, text = candidate.split(" "), candidate
        if line == lines - 1:  # the last line of a paragraph is shorter
            text = " ".join(words[: max(2, len(words) * 2 // 3)])
        draw_text(draw, (x0, y0 + line * step), text, face, (90, 90, 90))
    return y0 + lines * step


def _row_height(size: int) -> int:
    return scaled(size, 0.065, 7)


def _table(draw: ImageDraw.ImageDraw, rng: random.Random, size: int, x0: int, y0: int, width: int, rows: int,
           highlight: int | None, highlight_color) -> tuple[int, list[tuple[str, int, int]]]:
    """Header + ``rows`` data rows with grid lines; returns the y below it and the rows' contents."""
    row_h = _row_height(size)
    col_x = [x0, x0 + int(width * 0.5), x0 + int(width * 0.72), x0 + width]
    face = font("sans", scaled(size, 0.042, 5))
    bold = font("sans-bold", scaled(size, 0.042, 5))
    contents = [(item, rng.randint(1, 20), rng.randint(2, 99)) for item in rng.sample(ITEMS, rows)]
    draw.rectangle((x0, y0, x0 + width, y0 + row_h), fill=(225, 225, 230))
    if highlight is not None:
        top = y0 + (highlight + 1) * row_h
        draw.rectangle((x0, top, x0 + width, top + row_h), fill=highlight_color)
    for col, title in enumerate(("Item", "Qty", "Price")):
        draw_text(draw, (col_x[col] + 3, y0 + row_h / 2), title, bold, INK, anchor="lm")
    for r, (item, qty, price) in enumerate(contents, start=1):
        for col, text in enumerate((item, str(qty), f"{price}.00")):
            draw_text(draw, (col_x[col] + 3, y0 + (r + 0.5) * row_h), text, face, INK, anchor="lm")
    bottom = y0 + (rows + 1) * row_h
    for r in range(rows + 2):
        draw.line((x0, y0 + r * row_h, x0 + width, y0 + r * row_h), fill=(120, 120, 120))
    for x in col_x:
        draw.line((x, y0, x, bottom), fill=(120, 120, 120))
    return bottom, contents


def _form_line(pixels: np.ndarray, rng: random.Random, size: int, y0: int, force_answer: str | None) -> str:
    """The fine element: four checkboxes at fixed columns; the ticked one is dithered. Returns it."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    face = font("sans", scaled(size, 0.036, 5))
    box = 2 * scaled(size, 0.03, 3)  # even: a checkerboard of even size has exactly zero mean
    draw_text(draw, (scaled(size, 0.06), y0 + box / 2), "Paid by:", face, INK, anchor="lm")
    top = y0 + box
    boxes = []
    for k, label in enumerate(PAYMENTS):
        left = scaled(size, 0.03 + 0.24 * k)  # fixed columns, as on a printed form
        draw.rectangle((left - 1, top - 1, left + box, top + box), fill=BOX_GREY, outline=(60, 60, 60))
        draw_text(draw, (left + box + scaled(size, 0.015), top + box / 2), label, face, INK, anchor="lm")
        boxes.append((left, top, left + box, top + box))
    ticked = choose_answer(rng, PAYMENTS, force_answer)
    pixels[:] = np.asarray(image)
    apply_texture(pixels, rect_mask(size, boxes[PAYMENTS.index(ticked)]), "checker", taper=2)
    return ticked


def generate(rng: random.Random, detail: str, size: int, force_answer: str | None):
    """Draw one page; returns (image, caption, qa, meta)."""
    fine = detail == "fine"
    paper = tuple(rng.randint(245, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), paper)
    draw = ImageDraw.Draw(image)
    margin = scaled(size, 0.06)
    width = size - 2 * margin

    heading = rng.choice(HEADINGS)
    heading_h = scaled(size, 0.17)  # a sixth of the page: readable in the 4x smaller view
    face = fit_font(heading, rng.choice(("sans-bold", "serif-bold")), width, heading_h)
    draw_text(draw, (margin, margin + heading_h / 2), heading, face, INK, anchor="lm")
    y = _body_text(draw, rng, size, margin, margin + heading_h + scaled(size, 0.04), width,
                   lines=1 if fine else rng.randint(1, 2))

    # The fine page keeps its bottom for the form line; small images hold fewer table rows.
    form_top = size - margin - 2 * scaled(size, 0.06, 6)
    table_top = y + scaled(size, 0.02)
    room = ((form_top - scaled(size, 0.03)) if fine else (size - margin)) - table_top
    rows = min(rng.randint(2, 4) if fine else rng.randint(2, 5), max(2, room // _row_height(size) - 1))
    highlight = rng.randrange(rows)
    color = rng.choice(COLOR_NAMES)
    bottom, contents = _table(draw, rng, size, margin, table_top, width, rows,
                              None if fine else highlight, pale(color))
    meta = {"heading": heading, "rows": contents}

    if fine:
        pixels = np.array(image)
        ticked = _form_line(pixels, rng, size, form_top, force_answer)
        qa = [QA("Which payment method is ticked on the form?", ticked, list(PAYMENTS), kind="ticked_box",
                 detail="fine")]
        caption = (f"A page headed \"{heading}\" with a table of {rows} items and a form on which "
                   f"\"{ticked}\" is ticked.")
        meta["ticked"] = ticked
        return Image.fromarray(pixels), caption, qa, meta

    qa = [QA("What is the heading of the page?", heading, options_with(heading, HEADINGS, rng), kind="heading",
             detail="coarse"),
          QA("How many rows does the table have, not counting the header?", str(rows), ["2", "3", "4", "5"],
             kind="table_rows", detail="coarse"),
          QA("Which row of the table is highlighted: the first, second, third ...?", ORDINALS[highlight],
             list(ORDINALS[:rows]), kind="highlighted_row", detail="coarse")]
    caption = (f"A page headed \"{heading}\" with a short paragraph and a table of {rows} items; the "
               f"{ORDINALS[highlight]} row ({contents[highlight][0]}) is highlighted in {color}.")
    meta.update(highlight=highlight, highlight_color=color)
    return image, caption, qa, meta
