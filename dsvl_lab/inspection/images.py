"""Images as the model's towers see them: the two views of the hybrid encoder, zooms, contact sheets.

* :func:`hybrid_views`, :func:`plot_views`: the high-res (SAM) and low-res (SigLIP) views of a photo
  side by side, with a zoom that shows the resolution (notebook 01).
* :func:`high_res_view`, :func:`low_res_view`: the view each tower gets of a task image (the
  model's antialiased resize, :func:`dsvl_lab.model.vision.resize_antialiased`).
* :func:`plot_detail_views`, :func:`pair_difference`, :func:`plot_answer_pair`: what the high-res and
  the low-res views keep of the fine evidence (the boxes come from
  :func:`~dsvl_lab.inspection.answer_regions.answer_region`).
* :func:`show_contact_sheet`: :func:`dsvl_lab.data.jsonl.contact_sheet` saved to a PNG and returned
  as an ``IPython.display.Image``, without leaving the notebook's matplotlib backend switched.

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
import torch

from ..config import DSVLConfig
from ..data.jsonl import contact_sheet
from ..model.vision import resize_antialiased
from ..processor import MIN_IMAGE_SIDE, load_image, pad_to_square, resize_longer_side, to_tensor


# ============================================================================ the two views of a photo
def as_display_image(image) -> Any:
    """A [3, H, W] / [1, 3, H, W] tensor in [0, 1], a PIL image or an HxWx3 array -> HxWx3 array."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu()
        if image.dim() == 4:
            image = image[0]
        return image.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.asarray(image)


def hybrid_views(image, config: DSVLConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The two views a hybrid model sees of one image: (high-res [3, S, S], low-res [3, s, s]), in [0, 1].

    The high-res view is exactly what :class:`~dsvl_lab.processor.DSVLProcessor` produces for this
    config (longer side resized to S, centred on a square of the mean colour); the low-res view is
    what the model derives from it inside ``VisionModel`` (antialiased bilinear resize to SigLIP's
    size). Works without a tokenizer, so also for the released sizes.
    """
    if config.encoder != "hybrid":
        raise ValueError(f"{config.name} is not a hybrid preset (encoder={config.encoder!r}); pick a -hybrid "
                         f"preset or dsvl-7b")
    background = tuple(int(255 * m) for m in config.processor_mean)
    picture = load_image(image, background=background, max_image_pixels=config.max_image_pixels)
    high = to_tensor(pad_to_square(resize_longer_side(picture, config.image_size, MIN_IMAGE_SIDE), background))
    low = resize_antialiased(high[None], config.siglip.image_size)[0]
    return high, low


def plot_views(views: dict[str, Any], crop: tuple[float, float, float, float] | None = None,
               panel_size: float = 3.0):
    """Images side by side (titles from the dict keys), each with its pixel size in the title.

    ``crop = (left, top, right, bottom)`` adds a second row with that region of every view, drawn
    with nearest-neighbour pixels so the resolution shows. The fractions refer to the padded
    square; a non-square image (the original photo) is treated as centred in its square, as the
    processor pads it, so the same ``crop`` finds the same region in every view.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    arrays = {title: as_display_image(image) for title, image in views.items()}
    rows = 2 if crop else 1
    fig, axes = plt.subplots(rows, len(arrays), figsize=(panel_size * len(arrays), panel_size * rows + 0.3),
                             squeeze=False)
    for column, (title, array) in enumerate(arrays.items()):
        height, width = array.shape[:2]
        top = axes[0, column]
        top.imshow(array)
        top.set_title(f"{title}\n{width} x {height} px", fontsize=9)
        if crop:
            side = max(width, height)  # fractions of the square the image is centred in
            left, upper = crop[0] * side - (side - width) / 2, crop[1] * side - (side - height) / 2
            box_w, box_h = (crop[2] - crop[0]) * side, (crop[3] - crop[1]) * side
            top.add_patch(Rectangle((left - 0.5, upper - 0.5), box_w, box_h, fill=False, color="red", lw=1.2))
            rows_slice = slice(max(int(round(upper)), 0), int(round(upper + box_h)))
            cols_slice = slice(max(int(round(left)), 0), int(round(left + box_w)))
            part = array[rows_slice, cols_slice]
            bottom = axes[1, column]
            bottom.imshow(part, interpolation="nearest")
            bottom.set_title(f"zoom: {part.shape[1]} x {part.shape[0]} px", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


# ============================================================================ the views of a task image
def low_res_view(image, size: int) -> np.ndarray:
    """The low-res view of a square RGB image: H x W x 3 float array in [0, 1], ``size`` pixels a side.

    Exactly what the hybrid model derives for SigLIP from its high-res input: the processor's
    ``to_tensor`` (a no-op resize when the image already has the high-res size), then the
    antialiased bilinear resize of ``VisionModel``.
    """
    tensor = to_tensor(image.convert("RGB"))[None]
    return resize_antialiased(tensor, size)[0].permute(1, 2, 0).numpy()


def high_res_view(image) -> np.ndarray:
    """A PIL image as an H x W x 3 float array in [0, 1] (the processor's ``to_tensor``)."""
    return to_tensor(image.convert("RGB")).permute(1, 2, 0).numpy()


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


# ============================================================================ contact sheets
def show_contact_sheet(samples: list, out: str | os.PathLike | None = None, columns: int = 4, dpi: int = 70):
    """Save a contact sheet of ``samples`` and return it as an ``IPython.display.Image`` (PNG, embedded).

    Without ``out`` the PNG goes to a temporary file that is removed once read. ``contact_sheet``
    selects matplotlib's Agg backend (right for the CLI); in a notebook that would stop later inline
    figures from showing, so the previous backend is restored afterwards.
    """
    import matplotlib
    from IPython.display import Image

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
