"""Shape traces: which module turns which tensor shape into which (notebook 01, the model tour).

* :func:`trace_shapes` runs a forward pass with a forward hook on every submodule and returns
  ``(module name, output shape)`` in the order the modules finish (children before their parent).
* :func:`trace_release` does the same for a released layout (``dsvl-7b``) on the **meta device**
  (:func:`~dsvl_lab.inspection.model_tables.meta_model`): shapes are computed, no weight or
  activation memory is allocated, so a laptop can trace the 7B.
* :func:`format_traces` prints traces side by side, repeated blocks collapsed (``blocks.* x12``).

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
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..config import DSVLConfig
from .model_tables import meta_model

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


def trace_release(name: str = "dsvl-7b", text_tokens: int = 24, num_images: int = 1, *, include=None,
                  inputs_of=()) -> Trace:
    """The shape trace of a (released) preset, computed on the meta device in about a second.

    One sequence of ``num_images * num_image_tokens + text_tokens`` tokens. On meta tensors the
    model cannot count the image-token positions, so the three steps of ``forward`` are run one by
    one: the token embedding, ``encode_images``, and the language model on the embeddings.
    """
    model = meta_model(DSVLConfig.from_name(name))
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
