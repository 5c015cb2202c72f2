"""Chart family: bar, line and pie charts drawn with matplotlib (values, the largest series, trends).

Coarse: a bar, line or pie chart with 2-5 series in distinct named colours. The signature question
asks for the colour of the largest one (tallest bar, line that ends highest, largest slice), with a
clear margin; others ask for a bar's value (the axis runs 0-10 with grid lines), a line's trend and
the number of bars/lines/slices.

Fine: a quarterly bar chart (Q1-Q4, random heights and colours) where exactly one bar is hatched
with 1-pixel lines (horizontal, vertical, or crossed as a checkerboard) around its own colour.
Question: which quarter's bar is hatched. Printed hatching in black-and-white reports ("hatched
bars are forecasts") is the real-world analogue; here the hatch has zero mean, so the low-res
view shows four plain bars whatever the answer.

Speed: one matplotlib Figure per process and image size is reused: five bar rectangles are made
once and resized, tick labels are rebuilt only when the categories change, and only lines and
wedges are created per sample. A chart costs 11-14 ms on one core, most of it matplotlib's text
drawing; the hatching is added afterwards in numpy. Each chart is drawn under matplotlib's default
style, so a notebook's rcParams cannot change the pixels.
"""
from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from PIL import Image

from .common import COLOR_NAMES, PALETTE, QA, apply_texture, choose_answer, count_phrase, options_with

DPI = 100
QUARTERS = ("Q1", "Q2", "Q3", "Q4")
HATCHES = {"horizontal": "horizontal lines", "vertical": "vertical lines", "checker": "cross-hatch"}
TITLES = ("Sales", "Visitors", "Rainfall", "Revenue", "Orders", "Downloads", "Energy use", "Scores")
CATEGORY_SETS = (("Mon", "Tue", "Wed", "Thu", "Fri"), ("A", "B", "C", "D", "E"), ("Q1", "Q2", "Q3", "Q4"),
                 ("North", "South", "East", "West"), ("2020", "2021", "2022", "2023", "2024"))
VALUE_NAMES = tuple(str(v) for v in range(1, 10))


# ============================================================================ the reused figure
class _Canvas:
    """A matplotlib Figure of ``size`` pixels with a cartesian and a pie axes, reused per sample."""

    def __init__(self, size: int) -> None:
        # Figure + FigureCanvasAgg directly, never pyplot: no global backend switch (a notebook's
        # inline plotting keeps working) and no figure manager to leak memory.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.size = size
        self.figure = Figure(figsize=(size / DPI, size / DPI), dpi=DPI)
        self.canvas = FigureCanvasAgg(self.figure)
        self.font_pt = max(4.0, size * 0.04 * 72 / DPI)  # about 4% of the image side
        self.xy = self.figure.add_axes((0.13, 0.12, 0.83, 0.74))
        self.pie = self.figure.add_axes((0.1, 0.04, 0.8, 0.8))
        for name in ("top", "right"):
            self.xy.spines[name].set_visible(False)
        self.xy.tick_params(labelsize=self.font_pt, length=2, pad=1)
        self.xy.set_axisbelow(True)  # grid lines behind the bars: the bars stay one flat colour
        self.xy.set_ylim(0, 10)
        self.xy.set_yticks(range(0, 11, 2))
        self.xy.grid(axis="y", color="0.85", linewidth=0.8)
        self.title = self.figure.text(0.5, 0.95, "", ha="center", va="top", fontsize=self.font_pt * 1.3,
                                      fontweight="bold")
        # Five bar rectangles made once and then only resized and recoloured: ax.bar() per sample
        # costs more than the drawing. Not antialiased, so a bar is exactly one flat colour.
        self.bar_patches = self.xy.bar(range(5), [1] * 5, width=0.7, antialiased=False).patches
        self.labels: tuple[str, ...] = ()

    def clear(self) -> None:
        """Remove the last sample's lines, wedges and texts; hide the bars."""
        for axes in (self.xy, self.pie):
            for artist in list(axes.patches) + list(axes.lines) + list(axes.texts):
                if artist not in self.bar_patches:
                    artist.remove()
        for rect in self.bar_patches:
            rect.set_visible(False)

    def show_xy(self, labels) -> None:
        """Use the cartesian axes with these category labels (tick labels are only rebuilt on change)."""
        self.xy.set_visible(True)
        self.pie.set_visible(False)
        if tuple(labels) != self.labels:
            self.labels = tuple(labels)
            self.xy.set_xlim(-0.6, len(labels) - 0.4)
            self.xy.set_xticks(range(len(labels)))
            self.xy.set_xticklabels(labels)

    def show_bars(self, values, colors) -> None:
        for rect, value, color in zip(self.bar_patches, values, colors):
            rect.set_height(value)
            rect.set_facecolor(_rgb(color))
            rect.set_visible(True)

    def render(self) -> np.ndarray:
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[:, :, :3].copy()


@lru_cache(maxsize=4)
def _canvas(size: int) -> _Canvas:
    return _Canvas(size)


def _rgb(name: str) -> tuple[float, float, float]:
    return tuple(c / 255 for c in PALETTE[name])


# ============================================================================ chart types
def _distinct_values(rng: random.Random, count: int, low: int = 1, high: int = 9, margin: int = 2) -> list[int]:
    """Integer values whose maximum beats the runner-up by at least ``margin``."""
    while True:
        values = [rng.randint(low, high) for _ in range(count)]
        top, second = sorted(values)[-1], sorted(values)[-2]
        if top - second >= margin:
            return values


def _bar_chart(rng: random.Random, canvas: _Canvas):
    count = rng.randint(3, 5)
    labels = next(s for s in rng.sample(CATEGORY_SETS, len(CATEGORY_SETS)) if len(s) >= count)[:count]
    colors = rng.sample(COLOR_NAMES, count)
    values = _distinct_values(rng, count)
    title = rng.choice(TITLES)
    canvas.show_xy(labels)
    canvas.show_bars(values, colors)
    canvas.title.set_text(title)
    top = colors[values.index(max(values))]
    pick = rng.randrange(count)
    qa = [QA("What colour is the tallest bar?", top, list(colors), kind="largest_color", detail="coarse"),
          QA(f"What is the value of the {colors[pick]} bar?", str(values[pick]),
             options_with(str(values[pick]), VALUE_NAMES, rng), kind="bar_value", detail="coarse"),
          QA("How many bars are in the chart?", str(count), ["3", "4", "5"], kind="count", detail="coarse")]
    caption = (f"A bar chart of {title.lower()} with {count_phrase(count, 'bar')} ({', '.join(labels)}); "
               f"the {top} bar ({labels[values.index(max(values))]}) is the tallest at {max(values)}.")
    return qa, caption, {"chart": "bar", "labels": list(labels), "values": values, "colors": colors}


def _line_chart(rng: random.Random, canvas: _Canvas):
    count = rng.randint(2, 3)
    colors = rng.sample(COLOR_NAMES, count)
    points = 6
    # Each line runs from a start to a clearly different end (a trend of at least 3), with wobble;
    # the end values are spread so that "ends highest" has a clear winner.
    ends = rng.sample([1.5, 3.5, 5.5, 7.5, 9.0], count)
    lines, trends = [], []
    for end in ends:
        start = rng.choice([v for v in (1.5, 3.0, 5.0, 7.0, 9.0) if abs(v - end) >= 3])
        wobble = [rng.uniform(-0.8, 0.8) for _ in range(points)]
        wobble[0] = wobble[-1] = 0.0
        lines.append([start + (end - start) * i / (points - 1) + wobble[i] for i in range(points)])
        trends.append("up" if end > start else "down")
    labels = ("Jan", "Feb", "Mar", "Apr", "May", "Jun")
    title = rng.choice(TITLES)
    canvas.show_xy(labels)
    width = max(1.0, canvas.size / 64) * 72 / DPI  # about 4 px at 256: one low-res pixel
    for color, ys in zip(colors, lines):
        canvas.xy.plot(range(points), ys, color=_rgb(color), linewidth=width, marker="o", markersize=width * 2.2)
    canvas.title.set_text(title)
    top = colors[ends.index(max(ends))]
    pick = rng.randrange(count)
    qa = [QA("Which colour line ends highest?", top, list(colors), kind="largest_color", detail="coarse"),
          QA(f"Does the {colors[pick]} line go up or down?", trends[pick], ["up", "down"], kind="trend",
             detail="coarse"),
          QA("How many lines are in the chart?", str(count), ["2", "3"], kind="count", detail="coarse")]
    caption = (f"A line chart of {title.lower()} from January to June with {count_phrase(count, 'line')}; "
               f"the {top} line ends highest and the {colors[pick]} line goes {trends[pick]}.")
    return qa, caption, {"chart": "line", "series": lines, "colors": colors, "trends": trends}


def _pie_chart(rng: random.Random, canvas: _Canvas):
    count = rng.randint(3, 5)
    colors = rng.sample(COLOR_NAMES, count)
    while True:  # the largest slice must beat the runner-up clearly (by 30%)
        shares = [rng.uniform(1, 5) for _ in range(count)]
        ordered = sorted(shares)
        if ordered[-1] >= 1.3 * ordered[-2]:
            break
    title = rng.choice(TITLES)
    canvas.xy.set_visible(False)
    canvas.pie.set_visible(True)
    canvas.pie.pie(shares, colors=[_rgb(c) for c in colors], startangle=rng.uniform(0, 360),
                   wedgeprops={"linewidth": 1, "edgecolor": "white"})
    canvas.pie.set_aspect("equal")
    canvas.title.set_text(title)
    top = colors[shares.index(max(shares))]
    qa = [QA("What colour is the largest slice?", top, list(colors), kind="largest_color", detail="coarse"),
          QA("How many slices does the pie chart have?", str(count), ["3", "4", "5"], kind="count",
             detail="coarse")]
    caption = f"A pie chart of {title.lower()} with {count_phrase(count, 'slice')}; the {top} slice is the largest."
    return qa, caption, {"chart": "pie", "shares": shares, "colors": colors}


def _hatched_bar_chart(rng: random.Random, canvas: _Canvas, force_answer: str | None):
    """The fine chart: four quarterly bars, one hatched with a zero-mean 1-pixel pattern."""
    colors = rng.sample(COLOR_NAMES, 4)
    values = [rng.randint(4, 9) for _ in range(4)]  # tall enough to hold a visible hatch
    title = rng.choice(TITLES)
    hatched = choose_answer(rng, QUARTERS, force_answer)
    hatch = rng.choice(tuple(HATCHES))
    canvas.show_xy(QUARTERS)
    canvas.show_bars(values, colors)
    canvas.title.set_text(title)
    pixels = canvas.render()

    # Find the hatched bar's pixels: its exact colour inside its column (bars are not antialiased).
    index = QUARTERS.index(hatched)
    left, right = (canvas.xy.transData.transform([(index + dx, 0)])[0][0] for dx in (-0.35, 0.35))
    column = np.zeros(pixels.shape[:2], dtype=bool)
    column[:, int(left) + 1:int(right)] = True
    mask = column & (pixels == np.array(PALETTE[colors[index]], dtype=np.uint8)).all(axis=2)
    apply_texture(pixels, mask, hatch, taper=5)

    qa = [QA("Which quarter's bar is hatched?", hatched, list(QUARTERS), kind="hatched_bar", detail="fine"),
          QA(f"What kind of hatching does the {hatched} bar have?", HATCHES[hatch], list(HATCHES.values()),
             kind="hatch_type", detail="fine")]
    caption = (f"A bar chart of {title.lower()} by quarter with bars in {', '.join(colors)}; "
               f"the {hatched} bar is filled with fine {HATCHES[hatch]}.")
    meta = {"chart": "bar", "labels": list(QUARTERS), "values": values, "colors": colors, "hatched": hatched,
            "hatch": hatch}
    return pixels, qa, caption, meta


def generate(rng: random.Random, detail: str, size: int, force_answer: str | None):
    """Draw one chart; returns (image, caption, qa, meta)."""
    import matplotlib.style

    # matplotlib's default style, whatever a notebook has set: the same seed must give the same pixels.
    with matplotlib.style.context("default"):
        return _generate(rng, detail, size, force_answer)


def _generate(rng: random.Random, detail: str, size: int, force_answer: str | None):
    canvas = _canvas(size)
    canvas.clear()
    if detail == "fine":
        pixels, qa, caption, meta = _hatched_bar_chart(rng, canvas, force_answer)
    else:
        kind = rng.choice(("bar", "line", "pie"))
        qa, caption, meta = {"bar": _bar_chart, "line": _line_chart, "pie": _pie_chart}[kind](rng, canvas)
        pixels = canvas.render()
    return Image.fromarray(pixels), caption, qa, meta
