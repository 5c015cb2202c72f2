"""Capture attention weights from chosen layers of a DSVLModel, within a memory budget.

What is captured is the softmax matrix of scaled dot-product attention, ``softmax(Q K^T / sqrt(d))``
(Vaswani et al., 2017), one [queries, keys] matrix per head: the "attention probabilities"
transformers returns with ``output_attentions=True`` and bertviz draws. DeepSeek-VL has three
kinds of attention layers, named here by component:

- ``"llm"``: the language model's causal self-attention (DeepSeek-LLM / LLaMA), over the whole
  sequence of text and image tokens: ``language_model.model.layers.<i>.self_attn``.
- ``"siglip"``: SigLIP's (the low-res tower's) full self-attention over its g x g patches:
  ``vision_model.low.blocks.<i>.attn``.
- ``"sam"``: SAM-B's (the high-res tower's) ViTDet blocks: *windowed* attention inside
  non-overlapping w x w windows, except the few *global* blocks (``global_attn_indexes``)
  that attend over the whole G x G grid: ``vision_model.high.blocks.<i>.attn``.

Only the layers asked for switch to the explicit-softmax path (``RecordableAttention``); the
others keep PyTorch's fused kernel. A forward hook on each chosen layer copies the weights of the
chosen heads to the CPU in fp16 right after the layer runs and drops the layer's own copy, so at
most one full-precision matrix is alive at a time.

A real-size SAM global layer holds 12 heads x 4096 x 4096 weights per image (400 MB in fp16), so
a capture first estimates what it will keep and refuses, with the figure and the fix, when that is
over ``budget_gb``::

    with AttentionCapture(model, components=("llm",), layers=[-1], heads=[0, 1]) as capture:
        model(**batch)
    capture.attentions["llm.23"]        # [B, 2, T, T] fp16 on the CPU
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from ..errors import InputError

COMPONENTS = ("llm", "siglip", "sam")
# Module-name prefix of each component's attention layers; the layer index follows it.
PREFIXES = {
    "llm": "language_model.model.layers.",
    "siglip": "vision_model.low.blocks.",
    "sam": "vision_model.high.blocks.",
}
SUFFIXES = {"llm": ".self_attn", "siglip": ".attn", "sam": ".attn"}
GIB = 1024**3


class CaptureBudgetError(InputError):
    """The capture asked for would keep more attention weights than the memory budget allows."""


@dataclass(frozen=True)
class LayerSpec:
    """One attention layer to capture: its short key (``"sam.1"``), module name and geometry."""

    key: str
    component: str
    index: int
    module_name: str
    num_heads: int
    window: int = 0  # SAM windowed blocks: the window side w; 0 = attends over the whole input


def short_key(component: str, index: int) -> str:
    return f"{component}.{index}"


def module_name(component: str, index: int) -> str:
    return f"{PREFIXES[component]}{index}{SUFFIXES[component]}"


def component_depth(config, component: str) -> int:
    """How many attention layers a component of this config has (0 when the model lacks it)."""
    if component == "llm":
        return config.llm.num_layers
    tower = config.siglip if component == "siglip" else config.sam
    return 0 if tower is None else tower.depth


def component_heads(config, component: str) -> int:
    return {"llm": config.llm.num_heads, "siglip": getattr(config.siglip, "num_heads", 0),
            "sam": getattr(config.sam, "num_heads", 0)}[component]


def resolve_layers(config, components: Iterable[str] = COMPONENTS,
                   layers: Sequence[int] | dict[str, Sequence[int]] | None = None) -> list[LayerSpec]:
    """The layers a capture covers, in forward order (SAM, SigLIP, then the LLM).

    ``layers``: None (every layer), indexes applied to every component (negative counts from the
    end, like Python: ``[-1]`` is the last layer of each), or ``{component: indexes}``.
    """
    components = [components] if isinstance(components, str) else list(components)
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; choose from {COMPONENTS}")
    specs = []
    for component in ("sam", "siglip", "llm"):  # the order the forward pass runs them
        if component not in components:
            continue
        depth = component_depth(config, component)
        if depth == 0:
            raise ValueError(f"{config.name} has no {component} tower (encoder={config.encoder!r}); "
                             f"drop {component!r} from components")
        wanted = layers.get(component, range(depth)) if isinstance(layers, dict) else (
            range(depth) if layers is None else layers)
        for index in sorted({check_index(i, depth, component) for i in wanted}):
            window = 0
            if component == "sam" and index not in config.sam.global_attn_indexes:
                window = config.sam.window_size
            specs.append(LayerSpec(short_key(component, index), component, index, module_name(component, index),
                                   component_heads(config, component), window))
    return specs


def check_index(index: int, depth: int, component: str) -> int:
    if not -depth <= int(index) < depth:
        raise ValueError(f"{component} has layers 0..{depth - 1}; layer {index} does not exist")
    return int(index) % depth


# ============================================================================ the memory estimate
def layer_matrix_shape(spec: LayerSpec, config, seq_len: int, num_images: int, batch: int) -> tuple[int, int, int]:
    """(matrices, queries, keys) of one layer's weights per head: what ``attend`` produces."""
    if spec.component == "llm":
        return batch, seq_len, seq_len
    if spec.component == "siglip":
        tokens = config.siglip.grid ** 2
        return num_images, tokens, tokens
    grid = config.sam.grid
    if spec.window == 0:  # global block: every patch attends to every patch, [G*G, G*G]
        return num_images, grid * grid, grid * grid
    per_side = -(-grid // spec.window)  # windows per side after padding the grid to a multiple of w
    return num_images * per_side**2, spec.window**2, spec.window**2


def estimate_bytes(specs: list[LayerSpec], config, seq_len: int, num_images: int = 1, batch: int = 1,
                   heads: Sequence[int] | None = None, itemsize: int = 2,
                   model_itemsize: int = 4) -> dict[str, int]:
    """Bytes a capture needs: ``kept`` (the fp16 copies of the chosen heads) and ``working``.

    ``working`` is the peak of the largest single layer while it runs the explicit path: its
    scores in the model's dtype, the float32 softmax and the weights cast back, for all heads.
    """
    kept = working = 0
    for spec in specs:
        matrices, queries, keys = layer_matrix_shape(spec, config, seq_len, num_images, batch)
        per_head = matrices * queries * keys
        n_heads = spec.num_heads if heads is None else len(heads)
        kept += per_head * n_heads * itemsize
        working = max(working, per_head * spec.num_heads * (4 + 2 * model_itemsize))
    return {"kept": kept, "working": working, "total": kept + working}


def format_bytes(n: float) -> str:
    for unit, size in (("GB", GIB), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


# ============================================================================ the context manager
class AttentionCapture:
    """Record the attention weights of chosen layers and heads during the forward passes inside ``with``.

    ``components``: any of ``"llm"``, ``"siglip"``, ``"sam"``. ``layers``: see :func:`resolve_layers`.
    ``heads``: head indexes kept in every layer (None = all). ``budget_gb``: the most memory the
    capture may use (kept copies + the working memory of the largest layer).

    The budget is checked before any attention runs: when the model is called directly the
    sequence length and image count are read from its inputs; otherwise (``generate``, a tower
    alone) each layer checks its own input before it runs. ``capture.attentions[key]`` is the
    first recorded call of each layer, ``capture.calls[key]`` all of them (one per decoding step
    when generating).
    """

    def __init__(self, model, components: Iterable[str] = COMPONENTS,
                 layers: Sequence[int] | dict[str, Sequence[int]] | None = None,
                 heads: Sequence[int] | None = None, budget_gb: float = 2.0,
                 dtype: torch.dtype = torch.float16) -> None:
        self.model = model
        self.config = model.config
        self.specs = resolve_layers(self.config, components, layers)
        self.heads = None if heads is None else sorted({int(h) for h in heads})
        for spec in self.specs:
            bad = [h for h in self.heads or [] if not 0 <= h < spec.num_heads]
            if bad:
                raise ValueError(f"{spec.key} has heads 0..{spec.num_heads - 1}; heads {bad} do not exist")
        self.budget = int(budget_gb * GIB)
        self.dtype = dtype
        self.calls: dict[str, list[torch.Tensor]] = {}
        self.kept_bytes = 0
        self._hooks: list = []

    # ------------------------------------------------------------------ results
    @property
    def attentions(self) -> dict[str, torch.Tensor]:
        """{short key: weights of its first call}; [B or windows, heads kept, queries, keys]."""
        return {key: calls[0] for key, calls in self.calls.items() if calls}

    def estimate(self, seq_len: int, num_images: int = 1, batch: int = 1) -> dict[str, int]:
        model_itemsize = next(self.model.parameters()).element_size()
        return estimate_bytes(self.specs, self.config, seq_len, num_images, batch, self.heads,
                              torch.empty((), dtype=self.dtype).element_size(), model_itemsize)

    def check_budget(self, seq_len: int, num_images: int = 1, batch: int = 1) -> None:
        """Raise :class:`CaptureBudgetError` when capturing one forward of this size is over budget."""
        need = self.estimate(seq_len, num_images, batch)
        if need["total"] > self.budget:
            raise CaptureBudgetError(self.budget_message(need))

    def budget_message(self, need: dict[str, int]) -> str:
        kinds = ", ".join(spec.key + (" (global)" if spec.component == "sam" and not spec.window else "")
                          for spec in self.specs[:8]) + (" ..." if len(self.specs) > 8 else "")
        heads = "all heads" if self.heads is None else f"heads {self.heads}"
        return (f"capturing {len(self.specs)} attention layer(s) [{kinds}] with {heads} needs about "
                f"{format_bytes(need['total'])} ({format_bytes(need['kept'])} of fp16 weights kept + "
                f"{format_bytes(need['working'])} working memory of the largest layer, all its heads), over the "
                f"budget of {format_bytes(self.budget)}. Capture fewer layers (layers=[...]) or heads (heads=[0]); "
                f"a bf16 model halves the working part, or raise budget_gb= if the memory is there")

    # ------------------------------------------------------------------ hooks
    def __enter__(self) -> "AttentionCapture":
        layers = self.model.attention_layers()
        self.calls = {spec.key: [] for spec in self.specs}
        self.kept_bytes = 0
        self._hooks = [self.model.register_forward_pre_hook(self._check_model_call, with_kwargs=True)]
        for spec in self.specs:
            layer = layers[spec.module_name]
            self._hooks.append(layer.register_forward_pre_hook(self._layer_guard(spec)))
            self._hooks.append(layer.register_forward_hook(self._keeper(spec)))
        self.model.record_attention([spec.module_name for spec in self.specs], on=True)
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self.model.record_attention([spec.module_name for spec in self.specs], on=False)

    def _check_model_call(self, module, args, kwargs) -> None:
        """Before ``model(...)``: the whole forward's estimate from its inputs."""
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        tokens = ids if ids is not None else embeds
        if tokens is None:
            return
        pixels = kwargs.get("pixel_values")
        num_images = 0 if pixels is None else pixels.shape[0]
        self.check_budget(tokens.shape[1], num_images, tokens.shape[0])

    def _layer_guard(self, spec: LayerSpec):
        """Before one layer runs: refuse if its weights would push the capture over budget."""

        def guard(module, args) -> None:
            x = args[0]  # llm [B, T, n] (T new tokens); siglip [B, N, width]; sam [B', h, w, C]
            queries = x.shape[1] * x.shape[2] if spec.component == "sam" else x.shape[1]
            keys = queries
            if spec.component == "llm" and len(args) > 4 and args[4] is not None:
                keys += args[4][0].shape[2]  # cached keys of earlier positions
            per_head = x.shape[0] * queries * keys
            n_heads = spec.num_heads if self.heads is None else len(self.heads)
            kept = per_head * n_heads * torch.empty((), dtype=self.dtype).element_size()
            working = per_head * spec.num_heads * (4 + 2 * x.element_size())
            if self.kept_bytes + kept + working > self.budget:
                need = {"kept": self.kept_bytes + kept, "working": working,
                        "total": self.kept_bytes + kept + working}
                raise CaptureBudgetError(self.budget_message(need))

        return guard

    def _keeper(self, spec: LayerSpec):
        """After one layer runs: keep the chosen heads in fp16 on the CPU, free the layer's copy."""

        def keep(module, args, output) -> None:
            weights = module.attention_weights  # [B or windows, heads, queries, keys]
            module.attention_weights = None
            if self.heads is not None:
                weights = weights[:, self.heads]
            kept = weights.to("cpu", self.dtype)
            self.kept_bytes += kept.numel() * kept.element_size()
            self.calls[spec.key].append(kept)

        return keep
