"""Screen family: UI-like screenshots with a title bar, a side menu, an input field or options, buttons.

Coarse: two big buttons at the bottom, each tinted in a named colour with a border of that colour
and a short dark bold label (an eighth of the screen high or more), a side menu of four items with
one highlighted, an input field. Questions: what the left button says, what the <colour> button
says, what colour the <label> button is, which menu item is selected.

Fine: the input field is replaced by a radio group "Theme: Light / Dark / Auto / System" at fixed
rows. The selected radio button's dot is a 1-pixel checkerboard, the others flat grey of the same
mean: the four buttons are identical in the low-res view. Question: which theme is selected.
(Real radio and checkbox marks are a few pixels wide and vanish the same way at low resolution;
the dither keeps their ink equal so that nothing else can give the answer away.)

Why short dark labels on tinted buttons? A tiny model must learn to read them within the CPU demo's
few hundred samples per family. Measured (stage 3 alone from `make demo`'s stage-2 model, 480
coarse screens, 40 held-out questions): white labels of up to six letters on saturated buttons
0.28 (chance 0.25); labels of at most four letters, dark on tinted buttons a third taller 0.50.
Dark ink on a light ground is how the document heading, which the demo reads, is drawn.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from .common import (COLOR_NAMES, INK, ORDINALS, PALETTE, QA, WHITE, apply_texture, choose_answer, draw_text,
                     draw_text_in_box, font, options_with, pale, scaled, shape_mask, with_article)

TITLES = ("Settings", "Mail", "Editor", "Photos", "Music", "Files", "Notes", "Calendar")
MENU_ITEMS = ("Home", "Files", "Mail", "Help", "Tools", "Photos", "Music", "Notes", "Share", "Print")
BUTTON_LABELS = ("OK", "Save", "Send", "Open", "Next", "Back")  # short: big enough to read at 64 px
THEMES = ("Light", "Dark", "Auto", "System")
DOT_GREY = (150, 150, 150)
FIELD_HINTS = ("Search", "Your name", "Email", "Subject", "File name")


def _a_window(title: str) -> str:
    """'A Mail window', 'An Editor window'."""
    return f"{'An' if title[0] in 'AEIOU' else 'A'} {title} window"


def _window(draw: ImageDraw.ImageDraw, rng: random.Random, size: int):
    """Title bar and side menu; returns (title, bar colour, menu items, selected index)."""
    title, bar = rng.choice(TITLES), rng.choice(COLOR_NAMES)
    bar_h = scaled(size, 0.12)
    draw.rectangle((0, 0, size, bar_h), fill=PALETTE[bar])
    draw_text(draw, (scaled(size, 0.04), bar_h / 2), title, font("sans-bold", scaled(size, 0.06, 5)), WHITE,
              anchor="lm")
    for k in range(3):  # the window buttons at the right of the title bar
        cx, r = size - scaled(size, 0.05 + 0.07 * k), scaled(size, 0.022, 2)
        draw.ellipse((cx - r, bar_h / 2 - r, cx + r, bar_h / 2 + r), fill=(235, 235, 235))

    items = rng.sample(MENU_ITEMS, 4)
    selected = rng.randrange(4)
    item_h, x0, x1 = scaled(size, 0.1), scaled(size, 0.03), scaled(size, 0.4)
    face = font("sans", scaled(size, 0.045, 5))
    for k, item in enumerate(items):
        y0 = scaled(size, 0.16) + k * item_h
        if k == selected:
            draw.rectangle((x0, y0, x1, y0 + item_h - 2), fill=PALETTE[bar])
        draw_text(draw, (x0 + scaled(size, 0.03), y0 + item_h / 2), item, face, WHITE if k == selected else INK,
                  anchor="lm")
    return title, bar, items, selected


def _buttons(draw: ImageDraw.ImageDraw, rng: random.Random, size: int):
    """Two big buttons side by side at the bottom; returns [(label, colour), ...]."""
    labels, colors = rng.sample(BUTTON_LABELS, 2), rng.sample(COLOR_NAMES, 2)
    top, bottom = scaled(size, 0.64), scaled(size, 0.94)
    for k in range(2):
        left = scaled(size, 0.04 + 0.48 * k)
        box = (left, top, left + scaled(size, 0.44), bottom)
        draw.rounded_rectangle(box, radius=scaled(size, 0.03), fill=pale(colors[k]), outline=PALETTE[colors[k]],
                               width=max(2, size // 64))
        draw_text_in_box(draw, box, labels[k], "sans-bold", INK, fill_ratio=0.8)
    return list(zip(labels, colors))


def _input_field(draw: ImageDraw.ImageDraw, rng: random.Random, size: int) -> None:
    face = font("sans", scaled(size, 0.045, 5))
    x0, x1 = scaled(size, 0.46), scaled(size, 0.96)
    draw_text(draw, (x0, scaled(size, 0.2)), "Name", face, INK, anchor="lm")
    y0 = scaled(size, 0.26)
    draw.rectangle((x0, y0, x1, y0 + scaled(size, 0.1)), fill=WHITE, outline=(130, 130, 130))
    draw_text(draw, (x0 + scaled(size, 0.02), y0 + scaled(size, 0.05)), rng.choice(FIELD_HINTS), face,
              (160, 160, 160), anchor="lm")


def _radio_group(pixels: np.ndarray, rng: random.Random, size: int, force_answer: str | None) -> str:
    """The fine element: four radio buttons at fixed rows; the selected dot is dithered. Returns it."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    face = font("sans", scaled(size, 0.045, 5))
    x0 = scaled(size, 0.46)
    draw_text(draw, (x0, scaled(size, 0.18)), "Theme", font("sans-bold", scaled(size, 0.045, 5)), INK, anchor="lm")
    radius = scaled(size, 0.035, 4)
    step = max(scaled(size, 0.1), 2 * radius + 1)  # fixed rows; on tiny screens the buttons just touch
    dots = []
    for k, theme in enumerate(THEMES):
        cy = scaled(size, 0.26) + k * step
        cx = x0 + radius
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=WHITE, outline=(90, 90, 90))
        inner = radius - max(2, radius // 4)
        dot = (cx - inner, cy - inner, cx + inner, cy + inner)
        draw.ellipse(dot, fill=DOT_GREY)
        dots.append(dot)
        draw_text(draw, (cx + radius + scaled(size, 0.03), cy), theme, face, INK, anchor="lm")
    selected = choose_answer(rng, THEMES, force_answer)
    pixels[:] = np.asarray(image)
    apply_texture(pixels, shape_mask(size, "circle", dots[THEMES.index(selected)]), "checker", taper=2)
    return selected


def generate(rng: random.Random, detail: str, size: int, force_answer: str | None):
    """Draw one screenshot; returns (image, caption, qa, meta)."""
    background = tuple(rng.randint(236, 250) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    title, bar, items, selected = _window(draw, rng, size)
    buttons = _buttons(draw, rng, size)
    meta = {"title": title, "bar_color": bar, "menu": items, "selected": selected, "buttons": buttons}

    if detail == "fine":
        pixels = np.array(image)
        theme = _radio_group(pixels, rng, size, force_answer)
        qa = [QA("Which theme option is selected?", theme, list(THEMES), kind="selected_radio", detail="fine")]
        caption = (f"{_a_window(title)} with {with_article(bar)} title bar, a theme chooser set to {theme} "
                   f"and {buttons[0][1]} \"{buttons[0][0]}\" and {buttons[1][1]} \"{buttons[1][0]}\" buttons.")
        meta["theme"] = theme
        return Image.fromarray(pixels), caption, qa, meta

    _input_field(draw, rng, size)
    label, color = rng.choice(buttons)
    other_label, other_color = rng.choice(buttons)
    # qa[0] names no colour or label, so its answer is a function of the image alone (which is what
    # the detail check's classifiers, who never see the question, can learn).
    qa = [QA("What does the left button say?", buttons[0][0], options_with(buttons[0][0], BUTTON_LABELS, rng),
             kind="left_button_label", detail="coarse"),
          QA(f"What does the {color} button say?", label, options_with(label, BUTTON_LABELS, rng),
             kind="button_label", detail="coarse"),
          QA(f"What colour is the {other_label} button?", other_color, options_with(other_color, COLOR_NAMES, rng),
             kind="button_color", detail="coarse"),
          QA("Which item of the side menu is selected: the first, second, third or fourth?", ORDINALS[selected],
             list(ORDINALS[:4]), kind="selected_menu", detail="coarse")]
    caption = (f"{_a_window(title)} with {with_article(bar)} title bar, a menu with the {ORDINALS[selected]} item "
               f"({items[selected]}) selected, a text field and {buttons[0][1]} \"{buttons[0][0]}\" and "
               f"{buttons[1][1]} \"{buttons[1][0]}\" buttons.")
    return image, caption, qa, meta
