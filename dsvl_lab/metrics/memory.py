"""Analytic memory of one training step per stage: weights, gradients, AdamW state and activations.

Per parameter (``Precision``), the workbench's two training precisions (Lightning's ``32-true`` and
``bf16-mixed``, which is torch autocast over fp32 weights):

=============================  ======  ==========  ==============================================
                               fp32    bf16-mixed
=============================  ======  ==========  ==============================================
weight (every parameter)       4       4           fp32 master weights in both
bf16 working copy              0       2           autocast's cast of each matrix weight that the
                                                   backward needs (trainable, or crossed by gradients)
gradient (trainable)           4       4           fp32, like the weights
AdamW m and v (trainable)      8       8           two fp32 moments
=============================  ======  ==========  ==============================================

so a trainable parameter costs 16 bytes (fp32) or 18 (bf16-mixed) and a frozen one 4 (plus 2 when
gradients cross it under autocast). Megatron-style training (bf16 weights, fp32 master copy) also
comes to 18 = 2 + 4 + 4 + 8 per trainable parameter, but 2 per frozen one.

Activations are the tensors autograd saves for the backward pass, written per token in the style of
Korthikanti et al. 2022 ("Reducing activation recomputation in large transformer models", which
finds ``sbh(34 + 5as/h)`` bytes per layer for GPT with fp16 and dropout) and calibrated here against
measurement (tests/test_accounting.py) for what our layers save: RMSNorm, SwiGLU, no dropout, and
SDPA, which keeps no s x s score matrix (only q, k, v, the output and a log-sum-exp per head).
Tensors are of two kinds: the residual stream and norm statistics stay fp32 (4 bytes) even under
autocast; matrix-product operands and outputs take ``operand`` bytes (4 fp32, 2 bf16), and autocast
saves one cast per consuming product where fp32 saves one shared tensor. A module saves nothing
when nothing before it trains and it trains nothing itself (the frozen towers of stages 1-2), and
less when it is frozen but crossed (no operands kept for weight gradients).

Activation checkpointing (every LLM layer and SigLIP block, as ``configs/trainer/fsdp-7b.yaml``)
keeps each checkpointed layer's fp32 input (4n bytes a token) and recomputes one layer at a time in
backward; its working copies are cast again then. FSDP (FULL_SHARD) divides weights, gradients and
AdamW state by the world size and adds the gathered working set (see :func:`stage_memory`).

Peak: backward frees each layer's saved tensors as it writes that layer's gradients, so the saved
activations and the full gradients are never all alive together. We estimate
``activations = saved + max(loss head, one recomputed layer)`` (the two come one after the other)
and ``peak = weights + optimizer + max(activations, gradients, a frozen SAM global block's mask)``;
``total`` (the plain sum of the four columns) is the usual, safe upper bound. Measured peaks of
whole steps agree within about 1% (tests/test_accounting.py). Not modelled: under autocast the LLM
also holds each layer's fp32 rotated keys in its ``presents`` list until the decoder returns
(4n bytes a token a layer, gone before the loss head, which is larger).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import DSVLConfig, LLMConfig, SigLIPConfig
from .flops import check_sequence, gradient_reaches, trainable_groups

GiB = 2 ** 30


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter and per saved element (see the module docstring)."""

    name: str
    weight: int
    copy: int      # bf16 working copy of a matrix weight the backward needs (autocast)
    grad: int
    adam: int
    operand: int   # a saved matrix-product operand or output
    casts: bool    # True: autocast saves one cast per consuming product; False: one shared tensor


PRECISIONS = {"fp32": Precision("fp32", 4, 0, 4, 8, 4, False),
              "bf16-mixed": Precision("bf16-mixed", 4, 2, 4, 8, 2, True)}
FP32 = 4


def copies(p: Precision, consumers: int) -> int:
    """How many saved copies of one input feed ``consumers`` products (1 shared in fp32)."""
    return consumers if p.casts else 1


# ---------------------------------------------------------------------------------------- per-token terms
def llm_layer_bytes(cfg: LLMConfig, p: Precision, trains: bool) -> int:
    """Bytes saved per token by one LLaMA layer (its input is counted as the previous layer's output).

    Trainable (per token): fp32 residuals and norms 4n (x_normed, x2, x2_normed, output) + the
    inputs of q/k/v and gate/up (2n, or 5n casts) + SDPA's q, k, v, out (4n) + SwiGLU's gate, silu,
    up, product (4I) => fp32 (10n + 4I) * 4 bytes; bf16-mixed 34n + 8I bytes.
    Frozen but crossed (stage 1): no weight-gradient operands: fp32 2n (x2, output) + SDPA 4n + gate,
    silu, up (3I) => fp32 (6n + 3I) * 4; bf16-mixed 16n + 6I. Grouped kv heads are repeated before
    SDPA, so k and v are saved at full width. Small terms: two rsqrt and one log-sum-exp per head.
    """
    n, i = cfg.hidden_size, cfg.intermediate_size
    small = 2 * FP32 + cfg.num_heads * FP32
    attention = 4 * n * p.operand
    if trains:
        fp32_terms = 4 * n * FP32
        matmul_inputs = (copies(p, 3) + copies(p, 2)) * n * p.operand
        return fp32_terms + matmul_inputs + attention + 4 * i * p.operand + small
    return 2 * n * FP32 + attention + 3 * i * p.operand + small


def llm_extra_bytes(cfg: LLMConfig, p: Precision, trains: bool) -> int:
    """Per token, outside the layers: the embeddings (first layer's input, fp32), RoPE's cos and sin
    (fp32), and the final norm's x_normed and the lm_head input when the head trains."""
    head = (cfg.hidden_size * FP32 + cfg.hidden_size * p.operand) if trains else 0
    return cfg.hidden_size * FP32 + 2 * cfg.head_dim * FP32 + head


def loss_head_bytes(cfg: LLMConfig) -> int:
    """Per token at the start of backward: log-softmax output, its gradient and the logits' gradient,
    three [tokens, vocab] fp32 tensors (``causal_lm_loss`` upcasts the logits in both precisions)."""
    return 3 * cfg.vocab_size * FP32


def vit_block_bytes(width: int, mlp: int, heads: int, p: Precision) -> int:
    """Per token, one trainable pre-LN ViT block (SigLIP's, GELU MLP): fp32 x2 and output (2w), then
    operands: the ln1 and ln2 outputs (2w), qkv (3w), SDPA out (w), fc1 out and GELU out (2m)
    => fp32 (8w + 2m) * 4; bf16-mixed 20w + 4m. Plus two LayerNorm mean/rstd pairs and a log-sum-exp."""
    return 2 * width * FP32 + (6 * width + 2 * mlp) * p.operand + 4 * FP32 + heads * FP32


def siglip_bytes(cfg: SigLIPConfig, images: int, p: Precision) -> int:
    """A trainable SigLIP (stage 3): pixels kept for the patch conv's weight gradient, the first
    block's fp32 input, and every block (its output feeds the aligner, counted there)."""
    tokens = images * cfg.grid ** 2
    per_token = 3 * cfg.patch_size ** 2 * p.operand + cfg.width * FP32
    per_token += cfg.depth * vit_block_bytes(cfg.width, cfg.mlp_dim, cfg.num_heads, p)
    return tokens * per_token


def sam_blocks_bytes(config: DSVLConfig, images: int, p: Precision) -> int:
    """Trainable SAM blocks (no paper stage trains them; not calibrated): the ViT terms per token,
    plus the decomposed relative-position mask each block materialises, heads x s^2 per token."""
    cfg = config.sam
    tokens = images * cfg.grid ** 2
    out = tokens * cfg.depth * vit_block_bytes(cfg.width, cfg.mlp_dim, cfg.num_heads, p)
    for index in range(cfg.depth):
        side = cfg.grid if index in cfg.global_attn_indexes else cfg.window_size
        out += tokens * cfg.num_heads * side * side * p.operand
    return out


def sam_neck_bytes(config: DSVLConfig, images: int, p: Precision) -> int:
    """Both necks and both passes through the downsamples, trained behind frozen SAM blocks, per image:
    per branch, the block output (G^2 w operands, the 1x1 conv's weight gradient), two LayerNorm
    inputs (fp32) and the 3x3 conv input (G^2 C each), the interpolated map (16 g^2 C) and the first
    stride-2 output (8 g^2 C); the HD branch's output kept for alpha (4 g^2 C).
    fp32: (2 G^2 w + 6 G^2 C + 52 g^2 C) * 4 bytes an image; bf16-mixed 4 G^2 w + 20 G^2 C + 104 g^2 C."""
    cfg, g2 = config.sam, config.token_grid ** 2
    grid2, c = cfg.grid ** 2, cfg.neck_channels
    branch = grid2 * cfg.width * p.operand + 2 * grid2 * c * FP32 + grid2 * c * p.operand + 24 * g2 * c * p.operand
    layer_norm_stats = 4 * grid2 * 2 * FP32
    return images * (2 * branch + 4 * g2 * c * p.operand + layer_norm_stats)


def aligner_bytes(config: DSVLConfig, images: int, p: Precision) -> int:
    """The trained adaptor per image token: its inputs (the towers' outputs, for the first layers'
    weight gradients) and, per [GELU, Linear], the GELU input and output (2n; n/2 per branch for the
    separate design)."""
    kind, depth, n = config.aligner.projector_type, config.aligner.depth, config.llm.hidden_size
    if kind == "identity":
        return 0
    low = config.siglip.width if config.siglip is not None else 0
    high = config.sam.output_channels if config.sam is not None else 0
    stack = 0 if kind == "linear" else (depth - 1) * 2 * n
    return images * config.num_image_tokens * ((low + high) + stack) * p.operand


def sam_transient_bytes(config: DSVLConfig, images: int, p: Precision) -> int:
    """Working memory of a frozen SAM global block (forward only, freed before the LLM runs): the
    relative-position mask [images * heads, G^2, G^2] passed to SDPA as an additive bias."""
    if config.sam is None or not config.sam.global_attn_indexes:
        return 0
    return images * config.sam.num_heads * config.sam.grid ** 4 * p.operand


# ---------------------------------------------------------------------------------------- parameters
FSDP_UNITS = ("LlamaLayer", "SigLIPBlock", "SAMBlock")  # configs/trainer/fsdp-7b.yaml's auto-wrap policy
CHECKPOINTED = ("LlamaLayer", "SigLIPBlock")  # what --checkpointing recomputes (SAM's blocks never train)
GROUP_POINT = {"vision_model.low": "siglip", "vision_model.high": "sam", "vision_model.high.neck": "sam_out",
               "aligner": "aligner", "language_model": "llm"}  # a group's activations in gradient_reaches


@dataclass(frozen=True)
class ParameterTable:
    """Parameters per group (``training.spec.GROUPS``); ``cast``: those autocast casts (matrix weights
    of products, not the embedding or position tables), ``cast_checkpointed``: the part of them inside
    checkpointed layers; and the FSDP units' sizes."""

    total: dict[str, int]
    cast: dict[str, int]
    cast_checkpointed: dict[str, int]
    wrapped: int        # inside the FSDP units (LLM layers, SigLIP and SAM blocks)
    largest_unit: int


def parameter_table(config: DSVLConfig) -> ParameterTable:
    """Counted on the meta device: shapes only, no memory (the released 7B in about a second)."""
    import torch  # only here: the formulas above need no torch

    from ..model import DSVLModel
    from ..training.spec import GROUPS

    with torch.device("meta"):
        model = DSVLModel(config)
    inside = {id(p) for m in model.modules() if type(m).__name__ in CHECKPOINTED for p in m.parameters()}
    total, cast, cast_checkpointed = (dict.fromkeys(GROUPS, 0) for _ in range(3))
    for name, param in model.named_parameters():
        group = next(g for g in reversed(GROUPS) if any(name.startswith(p) for p in GROUPS[g]))
        total[group] += param.numel()
        if param.ndim >= 2 and "embed_tokens" not in name and "pos_embed" not in name:
            cast[group] += param.numel()
            cast_checkpointed[group] += param.numel() if id(param) in inside else 0
    units = [sum(p.numel() for p in m.parameters()) for m in model.modules() if type(m).__name__ in FSDP_UNITS]
    return ParameterTable(total, cast, cast_checkpointed, sum(units), max(units, default=0))


# ---------------------------------------------------------------------------------------- a stage
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step on one device.

    ``saved``: activations kept from the forward to the backward, per component. ``transient``: memory
    alive only for a moment: the loss head at the start of backward, one recomputed layer under
    checkpointing (these two come one after the other, on top of ``saved``), and a frozen SAM global
    block's mask during the forward (when nothing is saved yet).
    """

    weights: int
    gradients: int
    optimizer: int
    saved: dict[str, int]
    transient: dict[str, int]

    @property
    def activations(self) -> int:
        """Saved activations plus the larger of the loss head and a recomputed layer."""
        during_backward = max(self.transient.get("loss head", 0), self.transient.get("recomputed layer", 0))
        return sum(self.saved.values()) + during_backward

    @property
    def total(self) -> int:
        """The plain sum of the four columns: a safe upper bound."""
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def peak(self) -> int:
        """Our estimate of the peak: activations and full gradients are not alive together."""
        return self.weights + self.optimizer + max(self.activations, self.gradients,
                                                   self.transient.get("SAM global block", 0))


def saved_bytes(config: DSVLConfig, trainable: tuple[str, ...], batch: int, seq: int, p: Precision,
                checkpointing: bool, images_per_sample: int = 1) -> tuple[dict[str, int], int]:
    """(saved activations per component, the largest recomputed layer) for ``batch`` x ``seq`` tokens.

    ``checkpointing``: every LLM layer and SigLIP block in the backward graph keeps only its fp32
    input and is recomputed, one at a time, during backward.
    """
    images, tokens = batch * images_per_sample, batch * seq
    reaches = gradient_reaches(config, trainable, images)
    saved: dict[str, int] = {}
    recomputed = 0
    if images and config.siglip is not None and reaches["siglip"]:
        low = config.siglip
        block = images * low.grid ** 2 * vit_block_bytes(low.width, low.mlp_dim, low.num_heads, p)
        saved["SigLIP"] = siglip_bytes(low, images, p) - (low.depth * block if checkpointing else 0)
        saved["SigLIP"] += images * low.grid ** 2 * low.width * FP32 * low.depth if checkpointing else 0
        recomputed = block if checkpointing else 0
    if images and config.sam is not None and reaches["sam"]:
        saved["SAM blocks"] = sam_blocks_bytes(config, images, p)
    if images and config.sam is not None and reaches["sam_out"]:
        saved["SAM necks + downsamples"] = sam_neck_bytes(config, images, p)
    if images and reaches["aligner"]:
        saved["aligner"] = aligner_bytes(config, images, p)
    if reaches["llm"]:
        llm, trains = config.llm, "language_model" in trainable
        layer = tokens * llm_layer_bytes(llm, p, trains)
        kept = tokens * llm.hidden_size * FP32 if checkpointing else layer  # per layer
        saved["LLM layers"] = llm.num_layers * kept + tokens * llm_extra_bytes(llm, p, trains)
        recomputed = max(recomputed, layer if checkpointing else 0)
    return saved, recomputed


def working_copies(table: ParameterTable, reaches: dict[str, bool], p: Precision, checkpointing: bool) -> int:
    """Autocast's bf16 copies of the matrix weights the backward needs (none inside checkpointed layers,
    which cast again when they are recomputed)."""
    groups = [g for g in table.cast if reaches[GROUP_POINT[g]]]
    kept = sum(table.cast[g] - (table.cast_checkpointed[g] if checkpointing else 0) for g in groups)
    return kept * p.copy


def stage_memory(config: DSVLConfig, stage, batch: int, seq: int, precision: str = "bf16-mixed",
                 checkpointing: bool = False, fsdp: int = 1, images_per_sample: int = 1) -> MemoryEstimate:
    """Memory of one training step of ``stage`` on one device of an FSDP group of ``fsdp`` devices.

    ``batch`` is the per-device micro-batch. FSDP (FULL_SHARD, as ``configs/trainer/fsdp-7b.yaml``)
    divides weights, gradients and AdamW state by the world size and adds the gathered working set:
    the root unit (everything outside the wrapped layers and blocks: embedding, lm_head, necks,
    aligner) and two of the largest wrapped units (the one running and the one prefetched), in the
    compute dtype, which replaces autocast's working copies.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if fsdp < 1:
        raise ValueError(f"the FSDP world size must be >= 1, got {fsdp}")
    check_sequence(config, seq, images_per_sample)
    p, trainable = PRECISIONS[precision], trainable_groups(stage)
    table = parameter_table(config)
    images = batch * images_per_sample
    reaches = gradient_reaches(config, trainable, images)
    params = sum(table.total.values())
    trained = sum(count for group, count in table.total.items() if group in trainable)
    weights = params * p.weight // fsdp
    if fsdp > 1:
        weights += (params - table.wrapped + 2 * table.largest_unit) * p.operand
    else:
        weights += working_copies(table, reaches, p, checkpointing)
    saved, recomputed = saved_bytes(config, trainable, batch, seq, p, checkpointing, images_per_sample)
    transient = {"loss head": batch * seq * loss_head_bytes(config.llm) if reaches["llm"] else 0,
                 "recomputed layer": recomputed,
                 "SAM global block": sam_transient_bytes(config, images, p) if images else 0}
    return MemoryEstimate(weights, trained * p.grad // fsdp, trained * p.adam // fsdp, saved, transient)
