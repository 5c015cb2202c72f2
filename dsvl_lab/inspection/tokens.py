"""Token labelling: what each position of a sequence is, named and coloured.

One labeller, :func:`label_tokens`, reads one row of a batch and gives every position a readable
text and a kind: ``image`` (an image token), ``pad`` (padding), ``supervised`` (its label is the
token: it gets a loss) or ``prompt`` (no loss). Every other function here is a view of that list:

* :func:`token_spans` and :func:`plot_token_labels`: the labelled token strip of notebooks 01 and 02
  (runs of image tokens and of padding collapsed, boxes coloured by kind, :data:`LABEL_COLORS`);
* :func:`token_labels` and :func:`segment_map`: what an
  :class:`~dsvl_lab.inspection.attention_trace.AttentionTrace` keeps per position: a label
  (``<img r,c>`` for image tokens) and its segment, system / image / user / answer
  (:data:`SEGMENT_COLORS`, drawn by ``attention_plots.mark_segments``);
* :func:`supervised_text`: a row as one string with the supervised span between ``«`` and ``»``;
* :func:`image_token_span`: where the first image's tokens are; :func:`runs`: equal neighbours grouped.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..processor import TURN_SEPARATOR

IGNORE_INDEX = -100  # the label of a position that gets no loss
LABEL_COLORS = {"supervised": "#9be39b", "prompt": "#e6e6e6", "image": "#9cc3f0", "pad": "#ffffff"}
SEGMENT_COLORS = {"system": "#9e9e9e", "image": "#d62728", "user": "#1f77b4", "answer": "#2ca02c"}


def as_list(values: torch.Tensor | Sequence[int]) -> list[int]:
    """A row of ids or labels as a plain list, from a tensor or any sequence."""
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)


def runs(values: Sequence[str]) -> list[tuple[str, int, int]]:
    """Runs of equal neighbours: ``["a", "a", "b"]`` -> ``[("a", 0, 2), ("b", 2, 3)]`` (value, start, stop)."""
    spans: list[tuple[str, int, int]] = []
    for i, value in enumerate(values):
        if spans and spans[-1][0] == value:
            spans[-1] = (value, spans[-1][1], i + 1)
        else:
            spans.append((value, i, i + 1))
    return spans


# ============================================================================ the labeller
def label_tokens(processor, input_ids: torch.Tensor | Sequence[int], labels: torch.Tensor | Sequence[int] | None = None,
                 image_grid: int | None = None) -> list[tuple[str, str]]:
    """One row -> ``[(text, kind), ...]``, one entry per position: the one token labeller.

    ``kind``: ``image``, ``pad`` (a pad token with no loss), ``supervised`` (label != -100) or
    ``prompt``. ``text``: ``<img r,c>`` for image tokens (row and column in the g x g grid of
    ``image_grid`` tokens a side, counting on into a second image), ``<bos>`` / ``<eos>``, else the
    decoded token with newlines shown as ``⏎``.
    """
    ids = as_list(input_ids)
    labels = [IGNORE_INDEX] * len(ids) if labels is None else as_list(labels)
    names = {processor.bos_token_id: "<bos>", processor.eos_token_id: "<eos>"}
    positions: list[tuple[str, str]] = []
    image_index = 0
    for token, label in zip(ids, labels):
        if token == processor.image_token_id:
            grid = image_grid or max(math.isqrt(processor.num_image_tokens), 1)
            positions.append((f"<img {image_index // grid},{image_index % grid}>", "image"))
            image_index += 1
            continue
        text = names.get(token) or processor.decode([token], skip_special_tokens=False).replace("\n", "⏎")
        # The released tokenizer pads with EOS: an EOS is named <eos>, never taken for padding.
        if token == processor.pad_token_id and label == IGNORE_INDEX and token not in names:
            positions.append((text, "pad"))
        else:
            positions.append((text, "supervised" if label != IGNORE_INDEX else "prompt"))
    return positions


# ============================================================================ views of the labels
def token_spans(processor, input_ids: torch.Tensor | Sequence[int], labels: torch.Tensor | Sequence[int] | None = None,
                ) -> list[tuple[str, str]]:
    """One row of a batch -> ``[(text, kind), ...]`` for :func:`plot_token_labels`.

    A run of image tokens becomes one ``<image x64>`` entry, a run of padding one ``<pad x12>``;
    special tokens get short names (``<bos>``, ``<eos>``); spaces show as ``·`` and newlines as ``⏎``.
    """
    positions = label_tokens(processor, input_ids, labels)
    spans: list[tuple[str, str]] = []
    for kind, start, stop in runs([kind for _, kind in positions]):
        if kind in ("image", "pad"):
            spans.append((f"<{kind} x{stop - start}>", kind))
        else:
            spans.extend((text.replace(" ", "·"), kind) for text, _ in positions[start:stop])
    return spans


def token_labels(processor, input_ids: Sequence[int], image_grid: int) -> list[str]:
    """Readable labels: image tokens as ``<img r,c>``, special tokens shortened, newlines as ⏎."""
    return [text for text, _ in label_tokens(processor, input_ids, image_grid=image_grid)]


def segment_map(processor, input_ids: Sequence[int], labels: Sequence[int]) -> list[str]:
    """system (BOS + system prompt) / image / user (the user turn and "Assistant:") / answer (labelled tokens)."""
    system_chars = len(processor.system_prompt + TURN_SEPARATOR)
    segments = []
    for i, (_, kind) in enumerate(label_tokens(processor, input_ids, labels)):
        if kind in ("supervised", "image"):
            segments.append("answer" if kind == "supervised" else "image")
        # A text position is the system's while the text up to it is no longer than the system prompt.
        elif i == 0 or len(processor.decode(input_ids[1:i + 1], skip_special_tokens=False)) <= system_chars:
            segments.append("system")
        else:
            segments.append("user")
    return segments


def supervised_text(processor, input_ids, labels, open_mark: str = "\u00ab", close_mark: str = "\u00bb") -> str:
    """One row of a batch as text, the supervised tokens (label != -100) between ``«`` and ``»``.

    A run of image tokens is shown as ``<image xN>`` and left padding is dropped, so the string
    reads like the sample the model sees; special tokens keep their names (``<｜end▁of▁sentence｜>``).
    """
    ids = [int(t) for t in input_ids]
    # Padding inside the row (there is none after left padding) would read as prompt text.
    kinds = ["prompt" if kind == "pad" else kind for _, kind in label_tokens(processor, ids, [int(t) for t in labels])]
    start = 0
    while start < len(kinds) and ids[start] == processor.pad_token_id and kinds[start] != "supervised":
        start += 1  # left padding, even when the pad token is EOS
    pieces = []
    for kind, begin, end in runs(kinds[start:]):
        run = ids[start + begin:start + end]
        if kind == "image":
            pieces.append(f"<image x{len(run)}>")
        else:
            # Decoded as a run, not token by token: a character split over two tokens comes out whole.
            text = processor.decode(run, skip_special_tokens=False)
            pieces.append(open_mark + text + close_mark if kind == "supervised" else text)
    return "".join(pieces)


def image_token_span(input_ids: torch.Tensor | Sequence[int], image_token_id: int) -> tuple[int, int]:
    """(start, stop) positions of the first run of image tokens in one row; (0, 0) if none."""
    ids = as_list(input_ids)
    if image_token_id not in ids:
        return 0, 0
    start = ids.index(image_token_id)
    stop = start
    while stop < len(ids) and ids[stop] == image_token_id:
        stop += 1
    return start, stop


# ============================================================================ the labelled token strip
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
