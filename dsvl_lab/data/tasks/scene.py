"""Scene family: coloured shapes on a pale background (colour, shape, count, relative position).

Coarse: 2-5 large shapes (about a quarter of the image side) in distinct colours on a 3 x 3 grid.
Questions: how many shapes, the colour of a shape, the shape of a colour, left or right of.

Fine: always 4 shapes; 0-3 of them are striped with 1-pixel lines (horizontal or vertical) around
their own colour, so a striped shape has exactly the colour and brightness of a plain one once the
image is downscaled. Question: how many shapes are striped (answers 0-3, uniform). Shape sizes,
colours and places are drawn independently of the answer.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from .common import (COLOR_NAMES, PALETTE, QA, SHAPES, apply_texture, choose_answer, count_phrase, draw_shape,
                     light_color, options_with, scaled, shape_mask, with_article)

POSITION_NAMES = (("top left", "top", "top right"), ("left", "centre", "right"),
                  ("bottom left", "bottom", "bottom right"))
STRIPED_COUNTS = ("0", "1", "2", "3")


def _layout(rng: random.Random, size: int, count: int, equal_size: bool):
    """Place ``count`` shapes in distinct cells of a 3 x 3 grid with some jitter."""
    cell = size / 3
    cells = rng.sample(range(9), count)
    shapes = []
    colors = rng.sample(COLOR_NAMES, count)  # distinct colours: "the red one" always names one shape
    for index, where in zip(range(count), cells):
        row, col = divmod(where, 3)
        side = scaled(size, 0.26) if equal_size else scaled(size, rng.uniform(0.2, 0.29))
        slack = max(0, int(cell - side))
        x0 = int(col * cell) + rng.randint(0, slack)
        y0 = int(row * cell) + rng.randint(0, slack)
        shapes.append({"shape": rng.choice(SHAPES), "color": colors[index], "box": (x0, y0, x0 + side, y0 + side),
                       "row": row, "col": col})
    return shapes


def _describe(item: dict) -> str:
    return f"{with_article(item['color'] + ' ' + item['shape'])} {_where(item)}"


def _where(item: dict) -> str:
    name = POSITION_NAMES[item["row"]][item["col"]]
    return "in the centre" if name == "centre" else f"at the {name}"


def _coarse_questions(rng: random.Random, shapes: list[dict]) -> list[QA]:
    count = str(len(shapes))
    qa = [QA("How many shapes are there?", count, ["2", "3", "4", "5"], kind="count", detail="coarse")]
    types = [item["shape"] for item in shapes]
    unique_types = [item for item in shapes if types.count(item["shape"]) == 1]
    if unique_types:
        item = rng.choice(unique_types)
        qa.append(QA(f"What colour is the {item['shape']}?", item["color"],
                     options_with(item["color"], COLOR_NAMES, rng), kind="color_of_shape", detail="coarse"))
    item = rng.choice(shapes)
    qa.append(QA(f"What shape is the {item['color']} object?", item["shape"], list(SHAPES),
                 kind="shape_of_color", detail="coarse"))
    pairs = [(a, b) for a in shapes for b in shapes if a["col"] != b["col"]]
    if pairs:
        a, b = rng.choice(pairs)
        answer = "left" if a["col"] < b["col"] else "right"
        qa.append(QA(f"Is the {a['color']} {a['shape']} to the left or to the right of the {b['color']} {b['shape']}?",
                     answer, ["left", "right"], kind="left_right", detail="coarse"))
    return qa


def generate(rng: random.Random, detail: str, size: int, force_answer: str | None):
    """Draw one scene; returns (image, caption, qa, meta)."""
    fine = detail == "fine"
    count = 4 if fine else rng.randint(2, 5)
    shapes = _layout(rng, size, count, equal_size=fine)
    background = light_color(rng)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for item in shapes:
        draw_shape(draw, item["shape"], item["box"], fill=PALETTE[item["color"]])

    caption = f"{count_phrase(count, 'shape').capitalize()} on a pale background: " + \
        ", ".join(_describe(item) for item in shapes[:-1]) + f" and {_describe(shapes[-1])}."
    meta = {"shapes": [dict(item) for item in shapes]}
    if not fine:
        return image, caption, _coarse_questions(rng, shapes), meta

    # Fine: stripe k of the 4 shapes. The stripes add +-50 to alternate rows (or columns) of the
    # shape's own colour, so the shape's mean colour is unchanged.
    striped = int(choose_answer(rng, STRIPED_COUNTS, force_answer))
    chosen = rng.sample(range(count), 3)[:striped]  # always draw 3 so the stream does not depend on k
    directions = [rng.choice(("horizontal", "vertical")) for _ in range(count)]
    pixels = np.array(image)
    for index in chosen:
        item = shapes[index]
        item["stripes"] = directions[index]
        apply_texture(pixels, shape_mask(size, item["shape"], item["box"]), directions[index], taper=5)
    image = Image.fromarray(pixels)

    qa = [QA("How many shapes are striped?", str(striped), list(STRIPED_COUNTS), kind="count_striped", detail="fine")]
    if chosen:
        item = shapes[rng.choice(chosen)]
        qa.append(QA(f"Do the stripes on the {item['color']} {item['shape']} run horizontally or vertically?",
                     "horizontally" if item["stripes"] == "horizontal" else "vertically",
                     ["horizontally", "vertically"], kind="stripe_direction", detail="fine"))
    stripes = "none of them is striped" if striped == 0 else \
        f"{count_phrase(striped, 'shape')} {'is' if striped == 1 else 'are'} finely striped"
    caption = caption[:-1] + f"; {stripes}."
    meta["striped"] = [shapes[i]["color"] for i in chosen]
    meta["shapes"] = [dict(item) for item in shapes]
    return image, caption, qa, meta
