"""Shapes, parameter counts and the figures of notebook 01 (the model tour).

* :func:`trace_shapes` runs a forward pass with a forward hook on every submodule and returns
  ``(module name, output shape)`` in the order the modules finish (children before their parent).
* :func:`trace_release` does the same for a released layout (``dsvl-7b``) on the **meta device**:
  shapes are computed, no weight or activation memory is allocated, so a laptop can trace the 7B.
* :func:`format_traces` prints traces side by side, repeated blocks collapsed (``blocks.* x12``).
* :func:`param_breakdown`, :func:`plot_param_breakdown`: parameters per component.
* :func:`plot_views`, :func:`token_spans`, :func:`plot_token_labels`, :func:`plot_attention`:
  plain matplotlib figures (they return the ``Figure``; Jupyter shows it).

    >>> import torch
    >>> from dsvl_lab.model import DSVLModel
    >>> model = DSVLModel.from_name("dsvl-micro-siglip")
    >>> trace = trace_shapes(model.vision_model, pixel_values=torch.rand(1, 3, 32, 32))
    >>> trace[-1]
    ('low', (1, 16, 32))
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..config import DSVLConfig

Shape = tuple  # (1, 64, 128) for one tensor, ((1, 64, 256), (1, 64, 128)) for a tuple of tensors
Trace = list[tuple[str, Shape]]


# ============================================================================ shape traces
def output_shape(value: Any) -> Shape | None:
    """The shape of a module output: a tensor's shape, or the shapes of the tensors in a tuple.

    Only the top level of a tuple counts: an LLM layer returns ``(hidden, (key, value))`` and is
    reported as the hidden state's shape; the hybrid tower's ``(high, low)`` pair gives both.
    An object with ``.logits`` (``DSVLOutput``) gives the logits' shape. ``None`` if no tensor.
    """
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        shapes = tuple(tuple(v.shape) for v in value if isinstance(v, torch.Tensor))
        if not shapes:
            return None
        return shapes[0] if len(shapes) == 1 else shapes
    logits = getattr(value, "logits", None)
    return tuple(logits.shape) if isinstance(logits, torch.Tensor) else None


def name_matcher(patterns: str | Iterable[str] | None):
    """A predicate on dotted module names from glob patterns; ``None`` matches everything.

    ``*`` matches within one dotted part, ``**`` matches across dots:
    ``"vision_model.high.blocks.*"`` keeps the SAM blocks but not their children,
    ``"aligner.**"`` keeps everything inside the aligner.
    """
    if patterns is None:
        return lambda name: True
    if isinstance(patterns, str):
        patterns = [patterns]
    regexes = [re.compile(".*".join(re.escape(part).replace(r"\*", "[^.]*") for part in p.split("**")) + r"\Z")
               for p in patterns]
    return lambda name: any(r.match(name) for r in regexes)


@contextmanager
def recording_shapes(model: nn.Module, include=None, inputs_of=()) -> Iterator[Trace]:
    """Hooks on the submodules of ``model`` while the block runs; yields the list they fill.

    ``include``: glob patterns of modules whose outputs are recorded (all submodules if None).
    ``inputs_of``: glob patterns of modules whose *input* is recorded too, as ``"name (input)"``
    (shows what a functional op such as ``F.interpolate`` produced just before that module).
    """
    keep, wants_input = name_matcher(include), name_matcher(inputs_of) if inputs_of else (lambda name: False)
    records: Trace = []
    handles = []

    def on_output(name):
        def hook(module, args, output):
            shape = output_shape(output)
            if shape is not None:
                records.append((name, shape))
        return hook

    def on_input(name):
        def hook(module, args):
            shape = output_shape(tuple(args))
            if shape is not None:
                records.append((f"{name} (input)", shape))
        return hook

    try:
        for name, module in model.named_modules():
            if not name:  # the model itself: its output is what the caller gets back
                continue
            if wants_input(name):
                handles.append(module.register_forward_pre_hook(on_input(name)))
            if keep(name):
                handles.append(module.register_forward_hook(on_output(name)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def trace_shapes(model: nn.Module, *, include=None, inputs_of=(), **inputs) -> Trace:
    """Run ``model(**inputs)`` without gradients and return ``[(module name, output shape), ...]``.

    Every submodule is hooked (or those matching ``include``); the list is in the order modules
    finish, so a block's children come before the block. A module called twice (SAM's shared
    ``downsamples`` run on the main and the HD branch) appears twice. See :func:`recording_shapes`
    for ``include`` and ``inputs_of``.
    """
    with recording_shapes(model, include, inputs_of) as records, torch.no_grad():
        model(**inputs)
    return records


def meta_model(name_or_config: str | DSVLConfig, **overrides):
    """A :class:`DSVLModel` on the meta device: real shapes and parameter counts, no memory."""
    from ..model import DSVLModel

    config = (name_or_config if isinstance(name_or_config, DSVLConfig)
              else DSVLConfig.from_name(name_or_config, **overrides))
    with torch.device("meta"):
        return DSVLModel(config)


def trace_release(name: str = "dsvl-7b", text_tokens: int = 24, num_images: int = 1, *, include=None,
                  inputs_of=()) -> Trace:
    """The shape trace of a (released) preset, computed on the meta device in about a second.

    One sequence of ``num_images * num_image_tokens + text_tokens`` tokens. On meta tensors the
    model cannot count the image-token positions, so the three steps of ``forward`` are run one by
    one: the token embedding, ``encode_images``, and the language model on the embeddings.
    """
    model = meta_model(name)
    config = model.config
    size = config.image_size
    images = torch.empty(num_images, 3, size, size, device="meta")
    ids = torch.zeros(1, num_images * config.num_image_tokens + text_tokens, dtype=torch.long, device="meta")
    with recording_shapes(model, include, inputs_of) as records, torch.no_grad():
        embeds = model.language_model.embed(ids)  # [1, T, n], in forward's order: text first
        model.encode_images(images)  # [N, g*g, n]: these would overwrite the image positions of embeds
        model(inputs_embeds=embeds)
    return records


# The rows notebook 01 shows: the milestones of image -> tokens -> logits, not every Linear.
KEY_MODULES = (
    "language_model.model.embed_tokens",
    "vision_model.high.patch_embed", "vision_model.high.blocks.*", "vision_model.high.neck",
    "vision_model.high.neck_hd", "vision_model.high.downsamples.*", "vision_model.high",
    "vision_model.low.patch_embed", "vision_model.low.blocks.*", "vision_model.low",
    "aligner.*", "aligner",
    "language_model.model.layers.*", "language_model.model.norm", "language_model.lm_head",
)
# Inputs worth a row: each tower's image, and SAM's neck output after F.interpolate (no module of its own).
KEY_INPUTS = ("vision_model.high", "vision_model.low", "vision_model.high.downsamples")

_NUMBERED_PART = re.compile(r"(?<=\.)\d+(?=\.|$| )")


def collapse_repeats(trace: Trace) -> list[tuple[str, str, Shape, int]]:
    """Merge consecutive numbered siblings with equal shapes: ``blocks.0 .. blocks.11`` -> one row.

    Returns ``(generic name, first actual name, shape, count)`` rows; the generic name has ``*``
    in place of each number (``language_model.model.layers.*``).
    """
    rows: list[tuple[str, str, Shape, int]] = []
    for name, shape in trace:
        generic = _NUMBERED_PART.sub("*", name)
        if rows and generic != name and rows[-1][0] == generic and rows[-1][2] == shape:
            rows[-1] = (generic, rows[-1][1], shape, rows[-1][3] + 1)
        else:
            rows.append((generic, name, shape, 1))
    return rows


def format_shape(shape: Shape | None) -> str:
    """(1, 64, 128) -> '[1, 64, 128]'; a pair of shapes -> '[..], [..]'; None -> '-'."""
    if shape is None:
        return "-"
    if shape and isinstance(shape[0], tuple):
        return ", ".join(format_shape(s) for s in shape)
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_traces(traces: dict[str, Trace]) -> str:
    """Several traces as one text table, rows matched by module name (numbers collapsed).

    ``format_traces({"dsvl-tiny-hybrid": tiny, "dsvl-7b (meta)": release})``. Repeated blocks show
    their count (``x12``); a module one model lacks shows ``-``.
    """
    columns: list[dict[tuple[str, int], tuple[str, Shape, int]]] = []
    order: list[tuple[str, int]] = []
    for trace in traces.values():
        cells: dict[tuple[str, int], tuple[str, Shape, int]] = {}
        seen: dict[str, int] = {}
        previous = None
        for generic, actual, shape, count in collapse_repeats(trace):
            key = (generic, seen.get(generic, 0))
            seen[generic] = key[1] + 1
            cells[key] = (actual, shape, count)
            if key not in order:  # keep the row next to its predecessor in this trace
                order.insert(order.index(previous) + 1 if previous in order else len(order), key)
            previous = key
        columns.append(cells)

    def label(key):
        counts = [c[key][2] for c in columns if key in c]
        return key[0] if max(counts) > 1 else next(c[key][0] for c in columns if key in c)

    def cell(column, key):
        if key not in column:
            return "-"
        _, shape, count = column[key]
        return format_shape(shape) + (f" x{count}" if count > 1 else "")

    table = [["module", *traces]] + [[label(k), *(cell(c, k) for c in columns)] for k in order]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ============================================================================ parameters
COMPONENTS = ("vision_model.low", "vision_model.high", "aligner", "language_model")
COMPONENT_LABELS = {"vision_model.low": "SigLIP (low)", "vision_model.high": "SAM (high)",
                    "aligner": "aligner", "language_model": "LLM"}


def param_breakdown(name_or_config: str | DSVLConfig) -> dict[str, int]:
    """Parameters per component of a preset, counted on the meta device (0 for a missing tower).

    Keys: ``vision_model.low`` (SigLIP), ``vision_model.high`` (SAM), ``aligner``, ``language_model``;
    the same numbers ``dsvl-lab presets`` prints.
    """
    from ..cli import param_breakdown as breakdown_of_model

    return breakdown_of_model(meta_model(name_or_config))


def plot_param_breakdown(breakdowns: dict[str, dict[str, int]], log: bool = True):
    """Grouped bars: one group per component, one bar per preset, labelled in millions.

    A log axis (default) keeps the 6M aligner visible beside the 7B LLM.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(COMPONENTS))
    width = 0.8 / len(breakdowns)
    for i, (preset, parts) in enumerate(breakdowns.items()):
        values = [parts[c] / 1e6 for c in COMPONENTS]
        bars = ax.bar(x + (i - (len(breakdowns) - 1) / 2) * width, [v or np.nan for v in values], width,
                      label=f"{preset} ({sum(parts.values()) / 1e9:.2f}B)")
        for bar, value in zip(bars, values):
            text = "none" if not value else (f"{value:,.0f}M" if value >= 10 else f"{value:.1f}M")
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, value if value else 1),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, [COMPONENT_LABELS[c] for c in COMPONENTS])
    if log:
        ax.set_yscale("log")
        ax.set_ylim(1, None)
    ax.set_ylabel("parameters (millions" + (", log)" if log else ")"))
    ax.legend(frameon=False, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


# ============================================================================ images
def as_display_image(image) -> Any:
    """A [3, H, W] / [1, 3, H, W] tensor in [0, 1], a PIL image or an HxWx3 array -> HxWx3 array."""
    import numpy as np

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
    from ..model.vision import resize_antialiased
    from ..processor import MIN_IMAGE_SIDE, load_image, pad_to_square, resize_longer_side, to_tensor

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


# ============================================================================ tokens and labels
LABEL_COLORS = {"supervised": "#9be39b", "prompt": "#e6e6e6", "image": "#9cc3f0", "pad": "#ffffff"}


def token_spans(processor, input_ids: torch.Tensor | Sequence[int], labels: torch.Tensor | Sequence[int] | None = None,
                ) -> list[tuple[str, str]]:
    """One row of a batch -> ``[(text, kind), ...]`` with kind in supervised / prompt / image / pad.

    A run of image tokens becomes one ``<image x64>`` entry; special tokens get short names
    (``<bos>``, ``<eos>``, ``<pad>``); spaces show as ``·`` and newlines as ``⏎``.
    """
    ids = input_ids.tolist() if isinstance(input_ids, torch.Tensor) else list(input_ids)
    if labels is None:
        labels = [-100] * len(ids)
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    names = {processor.bos_token_id: "<bos>", processor.eos_token_id: "<eos>"}
    spans: list[tuple[str, str]] = []
    run = 0
    pad_run = 0
    for position, (token, label) in enumerate(zip(ids, labels)):
        if token == processor.image_token_id:
            run += 1
            if position + 1 == len(ids) or ids[position + 1] != token:
                spans.append((f"<image x{run}>", "image"))
                run = 0
            continue
        if token == processor.pad_token_id and label == -100 and token not in names:
            pad_run += 1
            if position + 1 == len(ids) or ids[position + 1] != token:
                spans.append((f"<pad x{pad_run}>", "pad"))
                pad_run = 0
            continue
        text = names.get(token) or processor.decode([token], skip_special_tokens=False)
        text = text.replace(" ", "·").replace("\n", "⏎")
        spans.append((text, "supervised" if label != -100 else "prompt"))
    return spans


def plot_token_labels(spans: list[tuple[str, str]], width: float = 10.0, font_size: int = 10):
    """The tokens as coloured boxes, wrapped into lines: green = gets loss, grey = no loss.

    A newline token (``⏎``) also ends the line, so the rendering keeps the prompt's layout.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    char_w = font_size * 0.62 / 72  # inches per character of DejaVu Sans Mono
    line_h = font_size * 2.1 / 72
    gap = 0.04
    placed, x, line = [], 0.0, 0
    for text, kind in spans:
        box_w = len(text) * char_w + 0.06
        if x > 0 and x + box_w > width:
            x, line = 0.0, line + 1
        placed.append((x, line, text, kind))
        x += box_w + gap
        if text.endswith("⏎"):
            x, line = 0.0, line + 1
    lines = max(line for _, line, _, _ in placed) + 1
    height = lines * line_h + 0.5
    fig = plt.figure(figsize=(width + 0.2, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(height, 0)
    ax.axis("off")
    for x, line, text, kind in placed:
        ax.text(x + 0.03, 0.15 + line * line_h + line_h / 2, text, family="DejaVu Sans Mono", fontsize=font_size,
                va="center", ha="left",
                bbox=dict(boxstyle="square,pad=0.15", facecolor=LABEL_COLORS[kind],
                          edgecolor="#999999" if kind != "pad" else "#cccccc", linewidth=0.4))
    legend = [Patch(facecolor=LABEL_COLORS[k], edgecolor="#999999", label=label) for k, label in
              (("supervised", "label = token (loss)"), ("prompt", "label = -100 (no loss)"),
               ("image", "image tokens (no loss)"))]
    ax.legend(handles=legend, loc="lower right", ncol=3, fontsize=8, frameon=False)
    return fig


# ============================================================================ attention
def image_token_span(input_ids: torch.Tensor | Sequence[int], image_token_id: int) -> tuple[int, int]:
    """(start, stop) positions of the first run of image tokens in one row; (0, 0) if none."""
    ids = input_ids.tolist() if isinstance(input_ids, torch.Tensor) else list(input_ids)
    if image_token_id not in ids:
        return 0, 0
    start = ids.index(image_token_id)
    stop = start
    while stop < len(ids) and ids[stop] == image_token_id:
        stop += 1
    return start, stop


def plot_attention(weights: torch.Tensor, image_span: tuple[int, int] | None = None, title: str = "",
                   log: bool = True):
    """A [T, T] attention map (query rows, key columns) with the image-token span outlined.

    ``log=True`` colours by log10 weight: a causal map spreads each row over up to T keys, so most
    weights are small and a linear scale would show little but the first column.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    weights = weights.detach().float().cpu()
    length = weights.shape[-1]
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    shown = weights.clamp(min=1e-4).numpy()
    image = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1.0) if log else None,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    if image_span and image_span[1] > image_span[0]:
        start, stop = image_span
        for position in (start - 0.5, stop - 0.5):
            ax.axvline(position, color="red", lw=0.8, ls="--")
            ax.axhline(position, color="red", lw=0.8, ls="--")
        # Above the diagonal (masked by causality, dark): room for a label over the image columns.
        ax.text((start + stop) / 2, 0.03 * length, f"image tokens\n{start}..{stop - 1}", ha="center", va="top",
                color="white", fontsize=9)
    ax.set_xlabel("key position (attended to)")
    ax.set_ylabel("query position")
    ax.set_xlim(-0.5, length - 0.5)
    ax.set_ylim(length - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
