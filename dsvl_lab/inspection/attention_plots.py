"""Attention figures (matplotlib): the token x token matrix and the views of an attention trace.

The token x token picture is drawn by one function, :func:`draw_token_matrix` (query rows, key
columns, a colour bar, the positions marked), for two kinds of input:

- :func:`plot_attention`: weights recorded with ``model.record_attention`` ([T, T], notebook 01),
  the image tokens outlined;
- :func:`plot_token_matrix`: one LLM layer of an
  :class:`~dsvl_lab.inspection.attention_trace.AttentionTrace` (or its rollout), with the system /
  image / user / answer segments marked (what bertviz's "model view" shows for text models).

The other views of a trace, each a function that draws on a given ``ax`` (or a new figure) and
returns the figure:

- :func:`plot_token_to_image`: where an LLM text token looks in the picture: its weights on the
  g x g image tokens, as a heatmap over the image (the "visual grounding" picture).
- :func:`plot_patch_attention`: where one vision patch looks. SAM's windowed blocks (ViTDet) can
  only see their own w x w window, so the window borders are drawn; SigLIP and SAM's global blocks
  see the whole grid.
- :func:`plot_image_mass`: the share of attention that goes to image tokens, layer x head (how
  much the language model "reads" the picture; it grows with multimodal training).

:func:`figure_png` turns a figure into PNG bytes (what the explorer and ``to_html`` use).
"""
from __future__ import annotations

import io

import numpy as np

from .tokens import SEGMENT_COLORS, runs

COLORMAPS = ("inferno", "viridis", "magma", "plasma", "gray")
NORMS = ("linear", "log", "clip 99%")


def new_axes(ax, figsize=(5.0, 4.4)):
    """``(ax.figure, ax)``, or a new figure of ``figsize`` with one axes when ``ax`` is None."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def make_norm(values: np.ndarray, norm: str = "linear"):
    """A colour scale for attention weights: linear 0..max, log (3 decades below the max), or clipped at the 99th
    percentile."""
    from matplotlib.colors import LogNorm, Normalize

    top = float(np.nanmax(values)) if values.size else 1.0
    top = top if top > 0 else 1.0
    if norm == "log":
        return LogNorm(vmin=top * 1e-3, vmax=top, clip=True)
    if norm == "clip 99%":
        return Normalize(vmin=0.0, vmax=max(float(np.percentile(values, 99)), 1e-12), clip=True)
    if norm != "linear":
        raise ValueError(f"unknown normalisation {norm!r}; choose from {NORMS}")
    return Normalize(vmin=0.0, vmax=top)


def overlay(ax, trace, heat: np.ndarray, cmap: str, norm: str, alpha: float):
    """The picture with ``heat`` ([rows, cols] over the whole image) on top at opacity ``alpha``."""
    side = trace.image.shape[0]
    ax.imshow(trace.image, extent=(0, side, side, 0))
    shown = ax.imshow(heat, cmap=cmap, norm=make_norm(heat, norm), alpha=alpha, extent=(0, side, side, 0),
                      interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlim(0, side), ax.set_ylim(side, 0)
    return shown


def head_name(head) -> str:
    """'head 3', or 'mean over heads' / 'max over heads', for titles."""
    return f"head {head}" if isinstance(head, int) else f"{head} over heads"


def query_name(trace, query) -> str:
    """The query of a title: one token with its text and segment, or the answer tokens' mean."""
    if query == "answer":
        return "mean over the answer tokens"
    return f"token {query} {trace.tokens[int(query)]!r} ({trace.segments[int(query)]})"


# ============================================================================ text token -> image
def plot_token_to_image(trace, key: str, head="mean", query="answer", *, cmap: str = "inferno",
                        norm: str = "linear", alpha: float = 0.6, ax=None, title: str | None = None):
    """Attention of an LLM query token on the g x g image tokens, over the picture."""
    fig, ax = new_axes(ax)
    if key == "rollout":
        heat = rollout_to_image(trace, query)
    else:
        heat = trace.token_to_image(key, head, query).numpy()  # [g, g]
    shown = overlay(ax, trace, heat, cmap, norm, alpha)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    what = "attention rollout over all layers" if key == "rollout" else f"{key}, {head_name(head)}"
    ax.set_title(title or f"{what}\n{query_name(trace, query)}; image mass {float(heat.sum()):.2f}", fontsize=9)
    return fig


def rollout_to_image(trace, query="answer") -> np.ndarray:
    """Attention rollout of the LLM read at the image tokens: [g, g]."""
    rollout = trace.rollout("llm")  # [T, T]
    rows = rollout[trace.query_rows(query)][:, trace.image_positions]  # [queries, g*g]
    return rows.mean(dim=0).reshape(trace.image_grid, trace.image_grid).numpy()


# ============================================================================ vision patch -> patch
def plot_patch_attention(trace, key: str, head="mean", patch: int | None = None, *, cmap: str = "inferno",
                         norm: str = "linear", alpha: float = 0.6, ax=None, title: str | None = None):
    """Where one patch of a vision layer attends, over the picture; SAM windows outlined in windowed blocks."""
    fig, ax = new_axes(ax)
    grid = trace.grid_of(key)
    patch = (grid * grid) // 2 + grid // 2 if patch is None else int(patch)
    heat = trace.patch_map(key, head, patch).numpy()  # [grid, grid]
    shown = overlay(ax, trace, heat, cmap, norm, alpha)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    cell = trace.image.shape[0] / grid  # pixels per patch
    row, col = divmod(patch, grid)
    if trace.is_windowed(key):
        draw_windows(ax, trace, row, col, cell)
        kind = f"windowed ({trace.sam_window}x{trace.sam_window} windows)"
    else:
        kind = "global (whole grid)" if key.startswith("sam.") else "full self-attention"
    draw_box(ax, col * cell, row * cell, cell, cell, "#00e5ff", 1.6)
    ax.set_title(title or f"{key}, {head_name(head)}: {kind}\nquery patch ({row}, {col}) of {grid}x{grid}", fontsize=9)
    return fig


def draw_box(ax, x: float, y: float, width: float, height: float, color: str, lw: float) -> None:
    """An unfilled rectangle (the query patch, its window, the highlighted layer x head cell)."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x, y), width, height, fill=False, edgecolor=color, lw=lw))


def draw_windows(ax, trace, row: int, col: int, cell: float) -> None:
    """Every SAM window's border (thin), the query patch's window (thick). Windows past the grid are padding."""
    window = trace.sam_window
    side = trace.image.shape[0]
    for edge in range(0, trace.sam_grid + window, window):
        ax.axvline(edge * cell, color="white", lw=0.6, alpha=0.8)
        ax.axhline(edge * cell, color="white", lw=0.6, alpha=0.8)
    top, left = (row // window) * window * cell, (col // window) * window * cell
    draw_box(ax, left, top, min(window * cell, side - left), min(window * cell, side - top), "#00e5ff", 2.2)


# ============================================================================ layer x head image mass
def plot_image_mass(trace, query="answer", *, cmap: str = "viridis", ax=None, title: str | None = None,
                    highlight: tuple[str, object] | None = None):
    """Attention mass on the image tokens for every LLM layer (rows) and head (columns), with values."""
    fig, ax = new_axes(ax)
    keys, heads, mass = trace.image_mass(query)
    shown = ax.imshow(mass, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label="share of attention on image tokens")
    ax.set_xticks(range(len(heads)), [str(h) for h in heads])
    ax.set_yticks(range(len(keys)), keys)
    ax.set_xlabel("head")
    if mass.size <= 256:
        for (i, j), value in np.ndenumerate(mass):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 0.6 else "black")
    if highlight is not None and highlight[0] in keys and isinstance(highlight[1], int) and highlight[1] in heads:
        i, j = keys.index(highlight[0]), heads.index(highlight[1])
        draw_box(ax, j - 0.5, i - 0.5, 1, 1, "#ff4081", 2.0)
    ax.set_title(title or f"image attention mass per layer and head\n({query_name(trace, query)})", fontsize=9)
    return fig


# ============================================================================ token x token matrix
def draw_token_matrix(ax, matrix: np.ndarray, *, cmap: str, norm=None, colorbar_pad: float = 0.03,
                      colorbar_label: str = "", segments: list[str] | None = None,
                      image_span: tuple[int, int] | None = None, query: int | None = None):
    """The one token x token picture: ``matrix`` [T, T] on ``ax``, query rows and key columns, with a colour bar.

    Marks, each optional: ``segments`` (a segment name per position) as coloured bars along both
    axes, ``image_span`` (start, stop) as dashed lines around the image tokens, ``query`` as a line
    along that row.
    """
    shown = ax.imshow(matrix, cmap=cmap, norm=norm, interpolation="nearest")
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=colorbar_pad, label=colorbar_label)
    if segments is not None:
        mark_segments(ax, segments)
    if image_span and image_span[1] > image_span[0]:
        mark_image_span(ax, image_span, matrix.shape[-1])
    if query is not None:
        ax.axhline(int(query), color="#00e5ff", lw=0.8)
    ax.set_xlabel("key position (attended to)")
    ax.set_ylabel("query position")
    return shown


def plot_attention(weights, image_span: tuple[int, int] | None = None, title: str = "", log: bool = True):
    """Recorded weights [T, T] (query rows, key columns) as a new figure, the image-token span outlined.

    ``log=True`` colours by log10 weight: a causal map spreads each row over up to T keys, so most
    weights are small and a linear scale would show little but the first column.
    """
    from matplotlib.colors import LogNorm

    weights = weights.detach().float().cpu()
    length = weights.shape[-1]
    fig, ax = new_axes(None, figsize=(5.4, 4.6))
    draw_token_matrix(ax, weights.clamp(min=1e-4).numpy(), cmap="viridis",
                      norm=LogNorm(vmin=1e-4, vmax=1.0) if log else None, colorbar_pad=0.04,
                      colorbar_label="attention weight", image_span=image_span)
    ax.set_xlim(-0.5, length - 0.5)
    ax.set_ylim(length - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_token_matrix(trace, key: str, head="mean", *, cmap: str = "inferno", norm: str = "log", ax=None,
                      query=None, title: str | None = None):
    """The [T, T] query x key matrix of an LLM layer of a trace (or its rollout), segments marked along both axes."""
    fig, ax = new_axes(ax)
    matrix = trace.rollout("llm").numpy() if key == "rollout" else trace.full_matrix(key, head).numpy()
    draw_token_matrix(ax, matrix, cmap=cmap, norm=make_norm(matrix, norm),
                      segments=trace.segments if len(trace.segments) == matrix.shape[0] else None,
                      query=query if query is not None and query != "answer" else None)
    what = "attention rollout over all layers" if key == "rollout" else f"{key}, {head_name(head)}"
    ax.set_title(title or f"{what}: query x key", fontsize=9, pad=16)
    return fig


def mark_image_span(ax, image_span: tuple[int, int], length: int) -> None:
    """Dashed red lines around the image tokens' rows and columns, named above the diagonal."""
    start, stop = image_span
    for position in (start - 0.5, stop - 0.5):
        ax.axvline(position, color="red", lw=0.8, ls="--")
        ax.axhline(position, color="red", lw=0.8, ls="--")
    # Above the diagonal (masked by causality, dark): room for a label over the image columns.
    ax.text((start + stop) / 2, 0.03 * length, f"image tokens\n{start}..{stop - 1}", ha="center", va="top",
            color="white", fontsize=9)


def mark_segments(ax, segments: list[str]) -> None:
    """Coloured bars just outside the left and top edges, one per segment run, named at the top."""
    from matplotlib.patches import Rectangle

    length = len(segments)
    bar = max(1.0, 0.03 * length)
    for name, start, stop in runs(segments):
        color = SEGMENT_COLORS.get(name, "black")
        ax.add_patch(Rectangle((start - 0.5, -0.5 - bar), stop - start, bar, color=color, clip_on=False))
        ax.add_patch(Rectangle((-0.5 - bar, start - 0.5), bar, stop - start, color=color, clip_on=False))
        if stop - start >= 0.06 * length:
            ax.text((start + stop) / 2, -0.6 - bar, name, ha="center", va="bottom", fontsize=7, color=color)


# ============================================================================ figures to PNG, the summary
def figure_png(fig, dpi: int = 100, close: bool = True) -> bytes:
    """PNG bytes of a figure at its own size (no tight bbox, so a fixed figsize gives fixed pixels)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    if close:
        plt.close(fig)
    return buffer.getvalue()


def summary_figures(trace) -> list[tuple[str, object]]:
    """The static figures of a trace, for ``to_html`` and for readers without a kernel."""
    import matplotlib.pyplot as plt

    figures = []
    llm = trace.layers("llm")
    if llm:
        fig, axes = plt.subplots(1, len(llm), figsize=(3.6 * len(llm), 3.6), squeeze=False)
        for ax, key in zip(axes[0], llm):
            plot_token_to_image(trace, key, "mean", "answer", ax=ax, title=f"{key}: answer tokens -> image")
        fig.tight_layout()
        figures.append(("Answer tokens -> image, each LLM layer (mean over heads)", fig))
        figures.append(("Image attention mass, layer x head", plot_image_mass(trace)))
        figures.append((f"{llm[-1]}: token x token", plot_token_matrix(trace, llm[-1])))
    for component, name in (("sam", "SAM (high-res): windowed vs global blocks"), ("siglip", "SigLIP (low-res)")):
        keys = trace.layers(component)
        if keys:
            fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), squeeze=False)
            for ax, key in zip(axes[0], keys):
                plot_patch_attention(trace, key, ax=ax, title=f"{key}" + (
                    " (windowed)" if trace.is_windowed(key) else " (global)" if component == "sam" else ""))
            fig.tight_layout()
            figures.append((f"{name}: where the centre patch looks", fig))
    return figures
