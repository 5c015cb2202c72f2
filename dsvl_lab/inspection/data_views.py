"""Views of the data world: the helpers and figures of notebook 02.

* :func:`show_contact_sheet`: :func:`dsvl_lab.data.jsonl.contact_sheet` saved to a PNG and returned
  as an ``IPython.display.Image``, without leaving the notebook's matplotlib backend switched.
* :func:`low_res_view`: the view the SigLIP tower gets of a task image (the model's antialiased
  resize, :func:`dsvl_lab.model.vision.resize_antialiased`).
* :func:`answer_variants`, :func:`answer_masks`, :func:`answer_region`: the same fine sample once
  per possible answer (``force_answer``), the pixels that change with the answer, and a box to zoom on.
* :func:`plot_detail_views`, :func:`pair_difference`, :func:`plot_answer_pair`: what the high-res and
  the low-res views keep of the fine evidence.
* :func:`supervised_text`: a row of a batch as text with the supervised span marked.
* :func:`stage_data_table`: the stage data presets as a markdown table.
* :func:`measured_language_share`, :func:`plot_warmup`, :func:`modality_grid`,
  :func:`plot_modality_strips`: the modality warm-up and modality grouping.

Figures are plain matplotlib (the functions return the ``Figure``; Jupyter shows it).

    >>> from dsvl_lab.data.tasks import generate_sample
    >>> low_res_view(generate_sample("scene", 0, "fine", 64).image, 16).shape
    (16, 16, 3)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MODALITY_COLORS = {"text": "#4c72b0", "image": "#e1812c"}  # blue = language-only, orange = image + text


# ============================================================================ contact sheets
def show_contact_sheet(samples: list, out: str | os.PathLike | None = None, columns: int = 4, dpi: int = 70):
    """Save a contact sheet of ``samples`` and return it as an ``IPython.display.Image`` (PNG, embedded).

    Without ``out`` the PNG goes to a temporary file that is removed once read. ``contact_sheet``
    selects matplotlib's Agg backend (right for the CLI); in a notebook that would stop later inline
    figures from showing, so the previous backend is restored afterwards.
    """
    import matplotlib
    from IPython.display import Image

    from ..data.jsonl import contact_sheet

    temporary = out is None
    if temporary:
        handle, out = tempfile.mkstemp(suffix=".png", prefix="dsvl_sheet_")
        os.close(handle)
    backend = matplotlib.get_backend()
    try:
        path = contact_sheet(samples, out, columns=columns, dpi=dpi)
        return Image(data=Path(path).read_bytes(), format="png")
    finally:
        if matplotlib.get_backend() != backend:
            import matplotlib.pyplot as plt

            plt.switch_backend(backend)
        if temporary:
            Path(out).unlink(missing_ok=True)


# ============================================================================ views and answer regions
def low_res_view(image, size: int) -> np.ndarray:
    """The low-res view of a square RGB image: H x W x 3 float array in [0, 1], ``size`` pixels a side.

    Exactly what the hybrid model derives for SigLIP from its high-res input: the processor's
    ``to_tensor`` (a no-op resize when the image already has the high-res size), then the
    antialiased bilinear resize of ``VisionModel``.
    """
    from ..model.vision import resize_antialiased
    from ..processor import to_tensor

    tensor = to_tensor(image.convert("RGB"))[None]
    return resize_antialiased(tensor, size)[0].permute(1, 2, 0).numpy()


def high_res_view(image) -> np.ndarray:
    """A PIL image as an H x W x 3 float array in [0, 1] (the processor's ``to_tensor``)."""
    from ..processor import to_tensor

    return to_tensor(image.convert("RGB")).permute(1, 2, 0).numpy()


def answer_variants(family: str, seed: int, image_size: int) -> dict[str, Any]:
    """The fine sample ``seed`` once per possible answer of its first question: {answer: Sample}.

    Every other random choice (layout, colours, text) is shared, so the images differ only where
    the answer is drawn (``generate_sample(..., force_answer=...)``).
    """
    from ..data.tasks import generate_sample

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


def _upscale(low: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscale of a low-res view to ``size`` pixels (each pixel a block)."""
    factor = size // low.shape[0]
    return np.repeat(np.repeat(low, factor, axis=0), factor, axis=1)


def plot_detail_views(samples: Sequence[Any], regions: Sequence[tuple[int, int, int, int]], low_size: int,
                      panel_size: float = 2.2, zoom_width: float = 1.5):
    """One row per sample: high-res, low-res (upscaled, nearest), and a zoom on ``region`` in each.

    The zooms show the same box of the picture at the resolution each tower gets: the fine
    evidence is plain in the high-res one and gone from the low-res one.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    # Wider zoom columns: a zoom is only worth showing with several screen pixels per image pixel.
    ratios = (1, 1, zoom_width, zoom_width)
    fig, axes = plt.subplots(len(samples), 4, figsize=(sum(ratios) * panel_size, len(samples) * panel_size + 0.4),
                             squeeze=False, gridspec_kw={"width_ratios": ratios})
    for row, (sample, region) in zip(axes, zip(samples, regions)):
        high = high_res_view(sample.image)
        size = high.shape[0]
        low = np.clip(low_res_view(sample.image, low_size), 0, 1)  # the resize overshoots by ~1e-7
        factor = size // low_size
        x0, y0, x1, y1 = region
        qa = sample.qa[0]
        row[0].imshow(high, interpolation="antialiased")
        row[0].set_title(f"{sample.family}: high-res {size} px", fontsize=8)
        row[0].set_ylabel(f"Q: {qa.question}\nA: {qa.answer}", fontsize=7, rotation=0, ha="right", va="center",
                          wrap=True)
        row[1].imshow(_upscale(low, size), interpolation="nearest")
        row[1].set_title(f"low-res {low_size} px (SigLIP)", fontsize=8)
        for ax in row[:2]:
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="red", lw=1.2))
        row[2].imshow(high[y0:y1, x0:x1], interpolation="nearest")
        row[2].set_title(f"zoom, high-res: {x1 - x0} x {y1 - y0} px", fontsize=8)
        row[3].imshow(low[y0 // factor:y1 // factor, x0 // factor:x1 // factor], interpolation="nearest")
        row[3].set_title(f"zoom, low-res: {(x1 - x0) // factor} x {(y1 - y0) // factor} px", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def pair_difference(first, second, low_size: int) -> dict[str, float]:
    """How different two images are in each view, in 0..255 units: max and mean absolute difference.

    The means are over the pixels that differ at high resolution (the answer's region), so the
    two views are compared on the same place.
    """
    high_a, high_b = high_res_view(first), high_res_view(second)
    high = np.abs(high_a - high_b).max(axis=2) * 255
    low = np.abs(low_res_view(first, low_size) - low_res_view(second, low_size)).max(axis=2) * 255
    changed = high > 0
    factor = high.shape[0] // low_size
    low_changed = changed.reshape(low_size, factor, low_size, factor).any(axis=(1, 3))
    return {"high_max": float(high.max()), "high_mean": float(high[changed].mean()) if changed.any() else 0.0,
            "low_max": float(low.max()), "low_mean": float(low[low_changed].mean()) if low_changed.any() else 0.0,
            "changed_pixels": int(changed.sum())}


def plot_answer_pair(first, second, low_size: int, panel_size: float = 2.4, vmax: float = 100.0):
    """Two samples that differ only in the answer, and |difference| of each view on one colour scale.

    ``first`` and ``second`` are Samples. The difference panels show max-over-channels |a - b| in
    0..255 units, clipped at ``vmax``; the low-res difference is upscaled (nearest) to the
    high-res size, so the two maps line up.
    """
    import matplotlib.pyplot as plt

    a, b = first.image, second.image
    size = a.size[0]
    high = np.abs(high_res_view(a) - high_res_view(b)).max(axis=2) * 255
    low = np.abs(low_res_view(a, low_size) - low_res_view(b, low_size)).max(axis=2) * 255
    fig, axes = plt.subplots(1, 4, figsize=(4 * panel_size + 0.6, panel_size + 0.5))
    axes[0].imshow(high_res_view(a))
    axes[0].set_title(f"answer {first.qa[0].answer}", fontsize=9)
    axes[1].imshow(high_res_view(b))
    axes[1].set_title(f"answer {second.qa[0].answer}", fontsize=9)
    shown = axes[2].imshow(high, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
    axes[2].set_title(f"|difference|, high-res {size} px\nmax {high.max():.0f} / 255", fontsize=9)
    axes[3].imshow(_upscale(low, size), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
    axes[3].set_title(f"|difference|, low-res {low_size} px\nmax {low.max():.2f} / 255", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[2:], fraction=0.04, pad=0.02, label="|a - b| (0..255)")
    return fig


# ============================================================================ samples as text
def supervised_text(processor, input_ids, labels, open_mark: str = "\u00ab", close_mark: str = "\u00bb") -> str:
    """One row of a batch as text, the supervised tokens (label != -100) between ``«`` and ``»``.

    A run of image tokens is shown as ``<image xN>`` and left padding is dropped, so the string
    reads like the sample the model sees; special tokens keep their names (``<｜end▁of▁sentence｜>``).
    """
    ids = [int(t) for t in input_ids]
    supervised = [int(t) != -100 for t in labels]
    pad, image = processor.pad_token_id, processor.image_token_id
    start = 0
    while start < len(ids) and ids[start] == pad and not supervised[start]:
        start += 1
    pieces, run, run_kind = [], [], None

    def flush():
        if not run:
            return
        if run_kind == "image":
            pieces.append(f"<image x{len(run)}>")
        else:
            text = processor.decode(run, skip_special_tokens=False)
            pieces.append(open_mark + text + close_mark if run_kind == "supervised" else text)

    for token, is_supervised in zip(ids[start:], supervised[start:]):
        kind = "image" if token == image else ("supervised" if is_supervised else "prompt")
        if kind != run_kind:
            flush()
            run, run_kind = [], kind
        run.append(token)
    flush()
    return "".join(pieces)


# ============================================================================ stage data
def stage_data_table(presets: dict[str, Any]) -> str:
    """The stage data presets (``STAGE_DATA_PRESETS``) as a markdown table, one row per stage."""
    header = ("| stage | language share | warm-up | grouped by modality | image formats | text format "
              "| fine share | families | seq len x batch |\n|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, data in presets.items():
        warmup = "none" if not data.warmup_steps or data.warmup_kind == "none" else \
            f"{data.warmup_kind}, {data.warmup_steps} steps" + \
            (f" ({data.warmup_stairs} stairs)" if data.warmup_kind == "step" else "")
        formats = ", ".join(f"{k} {v:.0%}" for k, v in data.image_formats.items())
        text = "-" if data.language_ratio == 0 and data.warmup_steps == 0 else data.text_format
        rows.append(f"| `{name}` | {data.language_ratio:g} | {warmup} | {'yes' if data.group_by_modality else 'no'} "
                    f"| {formats} | {text} | {data.fine_share:g} | {len(data.families)} "
                    f"| {data.seq_len} x {data.batch_size} |")
    return "\n".join([header, *rows])


# ============================================================================ mixing
def measured_language_share(plan, draws: int, window: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The share of text draws of ``plan`` in consecutive windows of ``window`` draws.

    Returns (window centres in draws, shares); a last partial window is dropped.
    """
    flags = np.array([plan.is_text(d) for d in range(draws - draws % window)], dtype=np.float64)
    shares = flags.reshape(-1, window).mean(axis=1)
    centres = np.arange(len(shares)) * window + (window - 1) / 2
    return centres, shares


def plot_warmup(plans: dict[str, Any], steps: int, window: int = 50):
    """The scheduled language share per step (lines) and each plan's measured share (dots).

    ``plans`` maps a label to a :class:`~dsvl_lab.data.mixing.ModalityPlan`; each plan's schedule is
    drawn as a line and its draws, counted in windows of ``window``, as dots at the window centre
    (converted to steps when a draw is one sample rather than one batch).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(steps)
    for index, (label, plan) in enumerate(plans.items()):
        color = f"C{index}"
        ax.plot(x, [plan.schedule(s) for s in x], color=color, lw=1.6, label=f"{label}: schedule")
        centres, shares = measured_language_share(plan, steps * plan.draws_per_step, window)
        ax.plot(centres / plan.draws_per_step, shares, "os^v"[index % 4], color=color, ms=5,
                mfc="none" if index else color,
                label=f"{label}: measured, windows of {window} draws")
    target = next(iter(plans.values())).schedule.target
    ax.axhline(target, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("language-only share")
    ax.set_ylim(min(target, 0.5) - 0.05, 1.05)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def modality_grid(plan, steps: int, batch_size: int) -> np.ndarray:
    """[steps, batch_size] booleans: True where the sample of that step and slot is language-only."""
    return np.array([[m == "text" for m in plan.step_modalities(s, batch_size)] for s in range(steps)])


def plot_modality_strips(grids: dict[str, np.ndarray], panel_width: float = 3.2):
    """Side-by-side strips of :func:`modality_grid`: rows = steps, columns = samples, colour = modality."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    steps = max(g.shape[0] for g in grids.values())
    fig, axes = plt.subplots(1, len(grids), figsize=(panel_width * len(grids), 0.085 * steps + 1.3), squeeze=False)
    cmap = ListedColormap([MODALITY_COLORS["image"], MODALITY_COLORS["text"]])
    for ax, (title, grid) in zip(axes[0], grids.items()):
        ax.imshow(grid.astype(int), cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_title(f"{title}\ntext share {grid.mean():.2f}", fontsize=9)
        ax.set_xlabel("sample in the batch")
        ax.set_ylabel("step")
        ax.set_xticks(range(0, grid.shape[1], 4))
    handles = [Patch(color=MODALITY_COLORS["text"], label="language-only"),
               Patch(color=MODALITY_COLORS["image"], label="image + text")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig

