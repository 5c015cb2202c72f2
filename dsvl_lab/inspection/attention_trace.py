"""AttentionTrace: the attention of one model on one image and prompt, kept in one file.

A trace holds what :class:`~dsvl_lab.inspection.attention_capture.AttentionCapture` recorded from
one forward pass over a conversation (system prompt, the image's g*g image tokens, the user's
question, the answer), plus everything needed to draw it without the model: readable token labels
and a segment map (system / image / user / answer), both from :mod:`~dsvl_lab.inspection.tokens`,
the image-grid geometry (the LLM's g x g image tokens, SigLIP's g x g patches, SAM's G x G
patches, SAM's window side w and its global blocks) and the picture itself. An instructor can
ship a trace and show it with no model at all.

Tensors per layer, keyed ``"llm.<i>"``, ``"siglip.<i>"``, ``"sam.<i>"``: [M, H, Q, K] fp16, where M
is 1 except for SAM windowed blocks (M = windows, each [w*w, w*w]), H the heads kept.

Aggregations (the usual ways of reading attention maps, e.g. Clark et al. 2019, "What does BERT
look at?"): head mean and max, attention mass on image tokens per layer and head, row entropy, and
attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"), opt-in.

File format: one ``.safetensors`` file, the tensors plus a JSON metadata string (no pickle, so a
trace from anywhere is safe to load).
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import atomic_write, write_text_atomic
from ..data.stage_data import eval_seed, world_image_size
from ..data.tasks import generate_sample
from ..processor import DSVLProcessor
from . import attention_plots as render
from .attention_capture import COMPONENTS, AttentionCapture, component_depth
from .tokens import segment_map, token_labels

SEGMENTS = ("system", "image", "user", "answer")
FORMAT = "dsvl_lab.attention_trace/1"


# ============================================================================ SAM window geometry
def windows_per_side(grid: int, window: int) -> int:
    """SAM pads its G x G grid up to a multiple of w, then cuts it into (ceil(G / w))^2 windows."""
    return -(-grid // window)


def window_location(row: int, col: int, grid: int, window: int) -> tuple[int, int]:
    """(window index, position inside the window) of patch (row, col), in ``window_partition``'s order.

    Windows are numbered row-major over the padded grid, positions row-major inside a window.
    """
    per_side = windows_per_side(grid, window)
    return (row // window) * per_side + col // window, (row % window) * window + col % window


def windowed_patch_map(weights: torch.Tensor, row: int, col: int, grid: int, window: int) -> torch.Tensor:
    """Where patch (row, col) looks in a windowed layer, on the full grid: [G, G], zero outside its window.

    weights: [windows, w*w, w*w] (one head). Keys in the padding are dropped.
    """
    index, position = window_location(row, col, grid, window)
    per_side = windows_per_side(grid, window)
    padded = torch.zeros(per_side * window, per_side * window)  # [P, P], P = padded grid side
    top, left = (index // per_side) * window, (index % per_side) * window
    padded[top:top + window, left:left + window] = weights[index, position].float().reshape(window, window)
    return padded[:grid, :grid]


def windowed_full_matrix(weights: torch.Tensor, grid: int, window: int) -> torch.Tensor:
    """A windowed layer as one [G*G, G*G] patch-to-patch matrix (block-sparse; padding dropped)."""
    per_side = windows_per_side(grid, window)
    side = per_side * window
    blocks = weights.float().reshape(per_side, per_side, window, window, window, window)  # [wi, wj, qr, qc, kr, kc]
    full = torch.zeros(per_side, window, per_side, window, per_side, window, per_side, window)
    for i in range(per_side):
        for j in range(per_side):
            full[i, :, j, :, i, :, j, :] = blocks[i, j]
    full = full.reshape(side, side, side, side)[:grid, :grid, :grid, :grid]  # [qr, qc, kr, kc], real patches
    return full.reshape(grid * grid, grid * grid)


# ============================================================================ the trace
@dataclass
class AttentionTrace:
    attentions: dict[str, torch.Tensor]  # key -> [M, H, Q, K] fp16
    heads: dict[str, list[int]]  # key -> original head index of each kept head
    tokens: list[str]  # readable label of each position
    segments: list[str]  # "system" | "image" | "user" | "answer" per position
    input_ids: list[int]
    image: np.ndarray  # [S, S, 3] uint8, the picture the model saw (the high-res view for SAM models)
    image_grid: int  # g: the LLM's image tokens are a g x g grid (also SigLIP's patch grid)
    sam_grid: int = 0  # G: SAM's patch grid (0 without SAM)
    sam_window: int = 0  # w: SAM's window side
    sam_global_blocks: tuple[int, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ what is in it
    def layers(self, component: str | None = None) -> list[str]:
        """Captured layer keys in order, all or of one component."""
        keys = [k for k in self.attentions if component is None or k.split(".")[0] == component]
        return sorted(keys, key=lambda k: (COMPONENTS.index(k.split(".")[0]), int(k.split(".")[1])))

    @property
    def components(self) -> list[str]:
        return [c for c in COMPONENTS if self.layers(c)]

    def is_windowed(self, key: str) -> bool:
        return key.startswith("sam.") and int(key.split(".")[1]) not in self.sam_global_blocks

    def grid_of(self, key: str) -> int:
        """Patches per side of a vision layer's grid (g for SigLIP, G for SAM)."""
        return self.sam_grid if key.startswith("sam.") else self.image_grid

    def positions(self, segment: str) -> list[int]:
        return [i for i, s in enumerate(self.segments) if s == segment]

    @property
    def image_positions(self) -> list[int]:
        return self.positions("image")

    def label(self) -> str:
        return str(self.meta.get("label") or self.meta.get("model", "trace"))

    # ------------------------------------------------------------------ heads
    def head_weights(self, key: str, head: int | str = "mean") -> torch.Tensor:
        """One head (by its original index), or the mean / max over kept heads: [M, Q, K] float32."""
        weights = self.attentions[key].float()  # [M, H, Q, K]
        if head == "mean":
            return weights.mean(dim=1)
        if head == "max":
            return weights.amax(dim=1)
        kept = self.heads[key]
        if int(head) not in kept:
            raise ValueError(f"head {head} of {key} was not captured; kept heads: {kept}")
        return weights[:, kept.index(int(head))]

    def full_matrix(self, key: str, head: int | str = "mean") -> torch.Tensor:
        """Query x key attention of one layer as one matrix [Q, K]; SAM windowed layers on the full grid."""
        weights = self.head_weights(key, head)  # [M, Q, K]
        if self.is_windowed(key):
            return windowed_full_matrix(weights, self.sam_grid, self.sam_window)  # [G*G, G*G]
        return weights[0]

    # ------------------------------------------------------------------ maps for the renderers
    def query_rows(self, query: int | str) -> list[int]:
        """LLM query positions: one position, or ``"answer"`` (every answer token; the last token if none)."""
        if query == "answer":
            return self.positions("answer") or [len(self.tokens) - 1]
        return [int(query)]

    def token_to_image(self, key: str, head: int | str = "mean", query: int | str = "answer") -> torch.Tensor:
        """Attention of an LLM query token (or the mean over answer tokens) on the image tokens: [g, g]."""
        if not key.startswith("llm."):
            raise ValueError(f"token -> image maps are for LLM layers; {key} is a vision layer")
        matrix = self.head_weights(key, head)[0]  # [T, T]
        rows = matrix[self.query_rows(query)][:, self.image_positions]  # [queries, g*g]
        return rows.mean(dim=0).reshape(self.image_grid, self.image_grid)  # [g*g] -> [g, g]

    def patch_map(self, key: str, head: int | str = "mean", patch: int | None = None) -> torch.Tensor:
        """Where vision patch ``patch`` (row-major index) attends, on its layer's grid: [grid, grid]."""
        grid = self.grid_of(key)
        patch = (grid * grid) // 2 + grid // 2 if patch is None else int(patch)
        row, col = divmod(patch, grid)
        weights = self.head_weights(key, head)  # [M, Q, K]
        if self.is_windowed(key):
            return windowed_patch_map(weights, row, col, grid, self.sam_window)
        return weights[0, patch].reshape(grid, grid)  # [G*G] -> [G, G]

    # ------------------------------------------------------------------ aggregations
    def image_mass(self, query: int | str = "answer") -> tuple[list[str], list[int], np.ndarray]:
        """Attention mass on the image tokens per LLM layer and head: (layer keys, heads, [layers, heads]).

        Each query row's weights on the g*g image tokens, summed, averaged over the query rows.
        """
        keys = self.layers("llm")
        if not keys:
            raise ValueError("this trace has no LLM layers; capture with components including 'llm'")
        heads = self.heads[keys[0]]
        rows, image = self.query_rows(query), self.image_positions
        mass = np.zeros((len(keys), len(heads)))
        for i, key in enumerate(keys):
            weights = self.attentions[key][0].float()  # [H, T, T]
            mass[i] = weights[:, rows][:, :, image].sum(dim=-1).mean(dim=-1).numpy()  # [H]
        return keys, heads, mass

    def entropy(self, key: str, head: int | str = "mean") -> torch.Tensor:
        """Entropy of each query's attention row in nats, [M, Q]: 0 = one key, log(K) = uniform."""
        p = self.head_weights(key, head).clamp_min(0)
        return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)

    def mean_entropy(self) -> dict[str, np.ndarray]:
        """{layer: mean row entropy per kept head} (nats)."""
        return {key: np.array([float(self.entropy(key, h).mean()) for h in self.heads[key]]) for key in self.layers()}

    def rollout(self, component: str = "llm") -> torch.Tensor:
        """Attention rollout (Abnar & Zuidema 2020): how attention flows from the inputs to the last layer.

        Each layer's head-mean matrix A becomes 0.5 A + 0.5 I (the residual stream), rows renormalised;
        the product over layers, first to last, is [Q, K]. Needs every layer and every head of the
        component: capture them all to use it.
        """
        keys = self.layers(component)
        depth = self.meta.get("depths", {}).get(component, len(keys))
        complete = len(keys) == depth and all(len(self.heads[k]) == self.meta.get("num_heads", {}).get(
            component, len(self.heads[k])) for k in keys)
        if not keys or not complete:
            raise ValueError(f"rollout over {component} needs all {depth} layers and all heads captured; "
                             f"this trace has {keys}. Capture with layers=None, heads=None")
        result = None
        for key in keys:
            matrix = self.full_matrix(key, "mean")  # [Q, K]
            matrix = 0.5 * matrix + 0.5 * torch.eye(matrix.shape[0])
            matrix = matrix / matrix.sum(dim=-1, keepdim=True)
            result = matrix if result is None else matrix @ result
        return result

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the trace to one ``.safetensors`` file (tensors + JSON metadata), atomically."""
        from safetensors.torch import save_file

        tensors = {f"attn/{key}": value.contiguous() for key, value in self.attentions.items()}
        tensors["image"] = torch.from_numpy(np.ascontiguousarray(self.image))
        tensors["input_ids"] = torch.tensor(self.input_ids, dtype=torch.long)
        header = {"format": FORMAT, "heads": self.heads, "tokens": self.tokens, "segments": self.segments,
                  "image_grid": self.image_grid, "sam_grid": self.sam_grid, "sam_window": self.sam_window,
                  "sam_global_blocks": list(self.sam_global_blocks), "meta": self.meta}
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"dsvl_trace": json.dumps(header)}))

    @classmethod
    def load(cls, path: str | Path) -> "AttentionTrace":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no trace file {path}; make one with `dsvl-lab trace ... --out {path}`")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if "dsvl_trace" not in metadata:
                raise ValueError(f"{path} is a safetensors file but not an attention trace (no dsvl_trace metadata)")
            header = json.loads(metadata["dsvl_trace"])
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} has trace format {header.get('format')!r}; this version reads {FORMAT!r}")
        return cls(
            attentions={name[5:]: t for name, t in tensors.items() if name.startswith("attn/")},
            heads={k: list(v) for k, v in header["heads"].items()}, tokens=header["tokens"],
            segments=header["segments"], input_ids=tensors["input_ids"].tolist(), image=tensors["image"].numpy(),
            image_grid=header["image_grid"], sam_grid=header["sam_grid"], sam_window=header["sam_window"],
            sam_global_blocks=tuple(header["sam_global_blocks"]), meta=header["meta"],
        )

    def to_html(self, path: str | Path) -> Path:
        """A self-contained page with the static figures (PNG inlined as base64): for readers without a kernel."""
        sections = [(title, render.figure_png(fig)) for title, fig in render.summary_figures(self)]
        return write_html(path, self, sections)


def write_html(path: str | Path, trace: AttentionTrace, sections: list[tuple[str, bytes]]) -> Path:
    from html import escape

    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
                   for k, v in trace.meta.items() if not isinstance(v, dict))
    figures = "".join(f"<h2>{escape(title)}</h2><img alt='{escape(title)}' src='data:image/png;base64,"
                      f"{base64.b64encode(png).decode()}'>" for title, png in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Attention trace: {escape(trace.label())}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
            "th{text-align:left;padding-right:1em}</style></head><body>"
            f"<h1>Attention trace: {escape(trace.label())}</h1><table>{rows}</table>{figures}</body></html>")
    return write_text_atomic(path, page)


# ============================================================================ making a trace from a model
def generate_answer(model, processor, user_message: dict, max_new_tokens: int) -> str:
    """Greedy answer of the model to one user message (the text before EOS)."""
    batch = processor([user_message], add_generation_prompt=True, return_labels=False)
    parameter = next(model.parameters())
    with torch.no_grad():
        new = model.generate(batch["input_ids"].to(parameter.device), batch["attention_mask"].to(parameter.device),
                             pixel_values=batch["pixel_values"].to(parameter.device, parameter.dtype),
                             max_new_tokens=max_new_tokens)
    return processor.decode(new[0]).strip()


def trace_model(model, image, prompt: str, *, answer: str | None = None, processor=None,
                components: Sequence[str] | None = None, layers=None, heads: Sequence[int] | None = None,
                max_new_tokens: int = 8, budget_gb: float = 2.0, meta: dict | None = None) -> AttentionTrace:
    """Run ``model`` once on (image, prompt, answer) with attention capture and return the trace.

    ``answer=None`` lets the model answer first (greedy, up to ``max_new_tokens``), then traces the
    conversation with its own answer; a string traces that answer (teacher forcing), e.g. the
    reference answer, so traces of different models line up token for token.
    """
    config = model.config
    if config.pixel_input != "raw":
        raise ValueError("trace_model takes preset-style models (pixel_input='raw'); "
                         "models from convert.from_hf expect transformers' pre-normalised views")
    processor = processor or DSVLProcessor.from_config(config)
    model.eval()
    user = {"role": "user", "content": processor.image_tag + prompt, "images": [image]}
    generated = None
    if answer is None:
        answer = generated = generate_answer(model, processor, user, max_new_tokens)
    sample = processor.encode_conversation([user, {"role": "assistant", "content": answer}])
    batch = processor.pad_left([sample])
    pixels = processor.process_images(sample.images)  # [1, 3, S, S] in [0, 1]
    parameter = next(model.parameters())
    components = list(components or [c for c in COMPONENTS if component_depth(config, c)])
    with torch.no_grad(), AttentionCapture(model, components, layers, heads, budget_gb) as capture:
        model(input_ids=batch["input_ids"].to(parameter.device),
              attention_mask=batch["attention_mask"].to(parameter.device),
              pixel_values=pixels.to(parameter.device, parameter.dtype))
    kept = {spec.key: (capture.heads or list(range(spec.num_heads))) for spec in capture.specs}
    info = {"model": config.name, "prompt": prompt, "answer": answer,
            "depths": {c: component_depth(config, c) for c in components},
            "num_heads": {spec.component: spec.num_heads for spec in capture.specs}}
    if generated is not None:
        info["generated"] = generated
    return AttentionTrace(
        attentions=capture.attentions, heads=kept,
        tokens=token_labels(processor, sample.input_ids, config.token_grid),
        segments=segment_map(processor, sample.input_ids, sample.labels), input_ids=sample.input_ids,
        image=(pixels[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),  # [3, S, S] -> [S, S, 3]
        image_grid=config.token_grid, sam_grid=config.sam.grid if config.sam else 0,
        sam_window=config.sam.window_size if config.sam else 0,
        sam_global_blocks=tuple(config.sam.global_attn_indexes) if config.sam else (),
        meta={**info, **(meta or {})},
    )


def trace_task(model, family: str = "chart", seed: int | None = None, detail: str = "fine",
               prompt: str | None = None, answer: str | None = "reference", **kwargs) -> AttentionTrace:
    """A trace on one task sample of the data world, by default a held-out one with its signature question.

    ``answer="reference"`` traces the sample's true answer (teacher forcing), None the model's own.
    """
    seed = eval_seed(0) if seed is None else seed
    sample = generate_sample(family, seed, detail=detail, image_size=world_image_size(model.config))
    qa = sample.qa[0]
    if answer == "reference":
        answer = qa.answer
    meta = {"family": family, "detail": detail, "seed": seed, "reference": qa.answer, **kwargs.pop("meta", {})}
    return trace_model(model, sample.image, prompt or qa.question, answer=answer, meta=meta, **kwargs)


def mean_row_sum_error(trace: AttentionTrace) -> float:
    """Largest |row sum - 1| over every captured row (a check; fp16 storage keeps it under ~1e-2)."""
    worst = 0.0
    for key in trace.layers():
        sums = trace.attentions[key].float().sum(dim=-1)
        worst = max(worst, float((sums - 1).abs().max()))
    return worst if not math.isnan(worst) else float("inf")
