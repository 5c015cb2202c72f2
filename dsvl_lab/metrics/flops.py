"""Analytic FLOPs of DeepSeek-VL per component, forward and backward, aware of what each stage trains.

Counting rules (those of ``torch.utils.flop_counter.FlopCounterMode`` on the meta device, which the tests
compare with; on a real CPU it does not count the fused attention kernel at all):

- only matrix products are counted: a product of an (m, k) by a (k, n) matrix costs ``2*m*k*n``; a
  convolution costs ``2 * output positions * kernel area * C_in * C_out`` (padding not discounted).
  Norms, softmax, GELU/SiLU, RoPE, residual adds, the cross-entropy and interpolation are left out,
  as FlopCounterMode and the usual "6N" estimates leave them out (they are memory-bound, not FLOP-bound);
- attention counts its two products, ``QK^T`` and ``softmax(.)V``, over the **full** T x T square,
  causal or not (FlopCounterMode does the same; a causal flash kernel can skip about half), and 2x
  that in backward, as the math path's autograd runs it (on a GPU, FlopCounterMode counts a fused
  kernel's backward as 2.5x, adding the recomputed ``QK^T``);
- backward: every operand of a product that needs a gradient costs one more product of the same
  size. A product ``x @ W`` pays ``dx = dy @ W^T`` when gradients must flow on to ``x`` (something
  trainable lies upstream of it) and ``dW = x^T @ dy`` when ``W`` trains. Hence, per module:

  ==============================================  ===============================================
  frozen, nothing trainable upstream              forward only (autograd records nothing)
  frozen, something trainable upstream            ~1x forward: the activation gradients only
                                                  (2x for the attention core, whose two operands
                                                  both carry gradients)
  trainable                                       ~2x forward (1x for its first layer when its input
                                                  needs no gradient: pixels, a frozen tower)
  ==============================================  ===============================================

Where gradients flow is a small data-flow question answered by :func:`gradient_reaches`: pixels
never need one; the towers' outputs do when the tower trains; the LLM's input does when anything
before it trains (the aligner, in every stage) or when its own embedding trains.

Component formulas follow the model files (``dsvl_lab/model/``): SigLIP (``siglip.py``, the paper's
"SigLIP-L", the original's ``siglip_vit.py``), SAM (``sam.py``, "SAM-B", the original's
``ImageEncoderViT``: windowed and global blocks, decomposed relative positions, two necks and the
shared stride-2 "downsamples"), the aligner (``aligner.py``, the paper's "VL adaptor", the original's
``MlpProjector``) and the LLM (``llm.py``, ``LlamaForCausalLM``: attention, SwiGLU, the untied
``lm_head``), with every image's g*g tokens inside the LLM's sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import DSVLConfig, LLMConfig, SAMConfig, SigLIPConfig

# ---------------------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Matmul:
    """One matrix product (or convolution) of the forward pass.

    ``reads``: the point of the data flow whose activation it takes (see :func:`gradient_reaches`).
    ``group``: the parameter group of its weight (``dsvl_lab.training.spec.GROUPS``), or None for a
    product of two activations (attention's ``QK^T`` and ``AV``), where both operands need gradients.
    """

    name: str
    flops: int
    reads: str
    group: str | None


@dataclass(frozen=True)
class ComponentFlops:
    """Forward and backward FLOPs of one component in one stage."""

    name: str
    group: str
    trainable: bool
    forward: int
    backward_input: int   # activation gradients (dx; dQ, dK, dV, dP in attention)
    backward_weight: int  # weight gradients (dW)

    @property
    def backward(self) -> int:
        return self.backward_input + self.backward_weight

    @property
    def total(self) -> int:
        return self.forward + self.backward


def mm(m: int, k: int, n: int) -> int:
    """FLOPs of an (m, k) x (k, n) product: m*n dot products of length k, a multiply and an add each."""
    return 2 * m * k * n


def conv(positions: int, kernel_area: int, c_in: int, c_out: int) -> int:
    """FLOPs of a convolution: every output position is a (kernel_area*c_in) x c_out product."""
    return 2 * positions * kernel_area * c_in * c_out


# ---------------------------------------------------------------------------------------- the towers
def vit_block(tokens: int, groups: int, side_tokens: int, width: int, heads: int, mlp: int,
              reads: str, group: str) -> list[Matmul]:
    """One pre-LN ViT block (SigLIP, or SAM over ``groups`` windows of ``side_tokens`` tokens each).

    tokens: tokens the MLP sees; groups * side_tokens: tokens the attention sees (SAM pads windows).
    """
    attended = groups * side_tokens          # [groups, side_tokens, width] after window partition
    head_dim = width // heads
    return [
        Matmul("qkv", mm(attended, width, 3 * width), reads, group),           # [., width] -> [., 3 width]
        Matmul("QK^T", mm(groups * heads * side_tokens, head_dim, side_tokens), reads, None),  # scores
        Matmul("AV", mm(groups * heads * side_tokens, side_tokens, head_dim), reads, None),    # weighted sum
        Matmul("proj", mm(attended, width, width), reads, group),
        Matmul("mlp.fc1", mm(tokens, width, mlp), reads, group),                # [tokens, width] -> [., mlp]
        Matmul("mlp.fc2", mm(tokens, mlp, width), reads, group),
    ]


def siglip_matmuls(cfg: SigLIPConfig, images: int) -> list[Matmul]:
    """SigLIP ViT (paper "SigLIP-L", original ``siglip_vit.py``): [N, 3, S, S] -> [N, g*g, width]."""
    tokens = images * cfg.grid ** 2          # g = S / patch
    group = "vision_model.low"
    out = [Matmul("patch_embed", conv(tokens, cfg.patch_size ** 2, 3, cfg.width), "pixels", group)]
    for _ in range(cfg.depth):
        out += vit_block(tokens, images, cfg.grid ** 2, cfg.width, cfg.num_heads, cfg.mlp_dim, "siglip", group)
    return out


def sam_block(cfg: SAMConfig, images: int, is_global: bool) -> list[Matmul]:
    """One SAM block (original ``Block`` of ``ImageEncoderViT``): global attention over the G x G grid,
    or windows of w x w on the grid zero-padded to a multiple of w (padded tokens are attended too)."""
    side = cfg.grid if is_global else cfg.window_size
    windows = 1 if is_global else ((cfg.grid + side - 1) // side) ** 2   # ceil(G / w)^2 windows per image
    groups, heads, head_dim = images * windows, cfg.num_heads, cfg.width // cfg.num_heads
    out = vit_block(images * cfg.grid ** 2, groups, side * side, cfg.width, heads, cfg.mlp_dim,
                    "sam", "vision_model.high")
    # Decomposed relative positions (MViTv2): q [groups*heads, side, side, head_dim] against a
    # [side, side, head_dim] table, once along rows and once along columns.
    rel = mm(groups * heads * side * side, head_dim, side)
    return out + [Matmul("rel_pos_h", rel, "sam", "vision_model.high"),
                  Matmul("rel_pos_w", rel, "sam", "vision_model.high")]


def sam_blocks_matmuls(cfg: SAMConfig, images: int, is_global: bool) -> list[Matmul]:
    """The windowed (with the patch embedding) or the global blocks of SAM's ViTDet encoder."""
    out = [] if is_global else [Matmul("patch_embed", conv(images * cfg.grid ** 2, cfg.patch_size ** 2, 3,
                                                           cfg.width), "pixels", "vision_model.high")]
    for index in range(cfg.depth):
        if (index in cfg.global_attn_indexes) == is_global:
            out += sam_block(cfg, images, is_global)
    return out


def sam_neck_matmuls(cfg: SAMConfig, token_grid: int, images: int) -> list[Matmul]:
    """Both necks and both passes through the shared downsamples (original ``neck``, ``neck_hd``,
    ``downsamples``): [N, G, G, width] -> conv1x1 -> conv3x3 -> [N, C, G, G] -> interpolate to 4g
    -> conv3x3/2 -> [N, 2C, 2g, 2g] -> conv3x3/2 -> [N, 4C, g, g]; the HD branch repeats it all."""
    c, group = cfg.neck_channels, "vision_model.high.neck"
    grid_positions = images * cfg.grid ** 2
    out = []
    for branch in ("neck", "neck_hd"):
        out += [
            Matmul(f"{branch}.conv1x1", conv(grid_positions, 1, cfg.width, c), "sam", group),
            Matmul(f"{branch}.conv3x3", conv(grid_positions, 9, c, c), "sam_out", group),
            Matmul(f"{branch}.down1", conv(images * (2 * token_grid) ** 2, 9, c, 2 * c), "sam_out", group),
            Matmul(f"{branch}.down2", conv(images * token_grid ** 2, 9, 2 * c, 4 * c), "sam_out", group),
        ]
    return out


def aligner_matmuls(config: DSVLConfig, images: int) -> list[Matmul]:
    """The VL adaptor (original ``MlpProjector``): [N*g*g, D] -> [N*g*g, n], for each projector type."""
    tokens, n, group = images * config.num_image_tokens, config.llm.hidden_size, "aligner"
    kind, depth = config.aligner.projector_type, config.aligner.depth
    low = config.siglip.width if config.siglip is not None else 0
    high = config.sam.output_channels if config.sam is not None else 0

    def stack(width: int, prefix: str = "") -> list[Matmul]:  # (depth - 1) x [GELU, Linear(width, width)]
        return [Matmul(f"{prefix}layers.{2 * i + 1}", mm(tokens, width, width), "aligner", group)
                for i in range(depth - 1)]

    if kind == "low_high_hybrid_split_mlp_gelu":   # SAM -> n/2, SigLIP -> n/2, concat, GELU, Linear
        return [Matmul("high_up_proj", mm(tokens, high, n // 2), "sam_out", group),
                Matmul("low_up_proj", mm(tokens, low, n // 2), "siglip", group)] + stack(n)
    if kind == "low_high_shared_mlp_gelu":         # concat raw features, one MLP
        return [Matmul("layers.0", mm(tokens, high + low, n), "towers", group)] + stack(n)
    if kind == "low_high_separate_mlp_gelu":       # a whole MLP per branch
        return ([Matmul("high_layers.0", mm(tokens, high, n // 2), "sam_out", group)] + stack(n // 2, "high_")
                + [Matmul("low_layers.0", mm(tokens, low, n // 2), "siglip", group)] + stack(n // 2, "low_"))
    if kind == "identity":
        return []
    source = "siglip" if config.encoder == "siglip" else "sam_out"
    first = [Matmul("layers.0", mm(tokens, low or high, n), source, group)]
    return first + (stack(n) if kind == "mlp_gelu" else [])


# ---------------------------------------------------------------------------------------- the LLM
def llm_layer_matmuls(cfg: LLMConfig, batch: int, seq: int) -> list[Matmul]:
    """One LLaMA decoder layer over [B, T, n] (``LlamaLayer``; transformers' ``LlamaDecoderLayer``):
    attention with RoPE, then SwiGLU (the paper's "Language Model", DeepSeek-LLM).

    The attention core is counted over all T x T (query, key) pairs and all query heads (grouped
    key/value heads are repeated before attention, as ``LlamaAttention`` does).
    """
    tokens, n, heads, head_dim = batch * seq, cfg.hidden_size, cfg.num_heads, cfg.head_dim
    kv_width, group = cfg.num_kv_heads * head_dim, "language_model"
    return [
        Matmul("q_proj", mm(tokens, n, heads * head_dim), "llm", group),      # [B*T, n] -> [B*T, heads*hd]
        Matmul("k_proj", mm(tokens, n, kv_width), "llm", group),
        Matmul("v_proj", mm(tokens, n, kv_width), "llm", group),
        Matmul("QK^T", mm(batch * heads * seq, head_dim, seq), "llm", None),  # [B*heads, T, hd] x [hd, T]
        Matmul("AV", mm(batch * heads * seq, seq, head_dim), "llm", None),    # [B*heads, T, T] x [T, hd]
        Matmul("o_proj", mm(tokens, heads * head_dim, n), "llm", group),
        Matmul("gate_proj", mm(tokens, n, cfg.intermediate_size), "llm", group),   # SwiGLU: silu(gate) * up
        Matmul("up_proj", mm(tokens, n, cfg.intermediate_size), "llm", group),
        Matmul("down_proj", mm(tokens, cfg.intermediate_size, n), "llm", group),
    ]


def llm_matmuls(cfg: LLMConfig, batch: int, seq: int) -> list[Matmul]:
    """Every decoder layer (the embedding lookup is a gather: no FLOPs)."""
    return [m for _ in range(cfg.num_layers) for m in llm_layer_matmuls(cfg, batch, seq)]


def lm_head_matmuls(cfg: LLMConfig, batch: int, seq: int) -> list[Matmul]:
    """The untied output head ``lm_head``: [B*T, n] -> [B*T, vocab] logits at every position."""
    return [Matmul("lm_head", mm(batch * seq, cfg.hidden_size, cfg.vocab_size), "llm", "language_model")]


# ---------------------------------------------------------------------------------------- stages
def trainable_groups(stage) -> tuple[str, ...]:
    """A stage name (``stage1_adaptor``, ``stage2_joint``, ``stage3_sft``), a StageSpec or a tuple of
    groups -> the trainable groups (the paper's stages and their miniatures train the same groups)."""
    if isinstance(stage, str):
        # Imported here, not at the top: training's callbacks import this module for their FLOP count,
        # and importing training.spec runs training/__init__.py, which imports the callbacks.
        from ..training.spec import STAGE_NAMES, paper_stage

        if stage not in STAGE_NAMES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGE_NAMES)}")
        return paper_stage(stage).trainable
    return tuple(getattr(stage, "trainable", stage))


def gradient_reaches(config: DSVLConfig, trainable: tuple[str, ...], images: int) -> dict[str, bool]:
    """Which activations need a gradient in the backward pass, from the pixels to the logits.

    An activation needs one when a trainable parameter lies on some path before it: then every
    product reading it must pass the gradient on (``dx``), even inside a frozen module. The points:
    ``pixels``; ``siglip`` (inside SigLIP and its output); ``sam`` (inside SAM's blocks); ``sam_out``
    (inside the necks and SAM's output); ``towers`` (either tower's output: the shared aligner's
    input); ``aligner`` (inside the aligner); ``llm`` (inside the LLM, lm_head included).
    """
    low = "vision_model.low" in trainable
    sam = "vision_model.high" in trainable
    sam_out = sam or "vision_model.high.neck" in trainable
    towers = (low and config.siglip is not None) or (sam_out and config.sam is not None)
    aligner = towers or "aligner" in trainable
    # the LLM's input: image embeddings (when images are in the batch) and token embeddings (its own group)
    llm = (images > 0 and aligner) or "language_model" in trainable
    return {"pixels": False, "siglip": low, "sam": sam, "sam_out": sam_out, "towers": towers,
            "aligner": aligner, "llm": llm}


def check_sequence(config: DSVLConfig, seq: int, images_per_sample: int) -> None:
    """Every image's g*g tokens sit inside the sequence: refuse a sequence too short to hold them."""
    if images_per_sample < 0 or seq < images_per_sample * config.num_image_tokens:
        raise ValueError(f"a sequence of {seq} tokens cannot hold {images_per_sample} image(s) of "
                         f"{config.num_image_tokens} tokens each; raise the sequence length")


def components(config: DSVLConfig, batch: int, seq: int, images_per_sample: int = 1) -> list[tuple[str, str, list]]:
    """(name, group, matmuls) for every component present, in the order the forward pass runs them."""
    check_sequence(config, seq, images_per_sample)
    images = batch * images_per_sample
    rows = []
    if images and config.siglip is not None:
        rows.append(("SigLIP", "vision_model.low", siglip_matmuls(config.siglip, images)))
    if images and config.sam is not None:
        rows.append(("SAM windowed blocks", "vision_model.high", sam_blocks_matmuls(config.sam, images, False)))
        rows.append(("SAM global blocks", "vision_model.high", sam_blocks_matmuls(config.sam, images, True)))
        rows.append(("SAM necks + downsamples", "vision_model.high.neck",
                     sam_neck_matmuls(config.sam, config.token_grid, images)))
    if images:
        rows.append(("aligner", "aligner", aligner_matmuls(config, images)))
    rows.append(("LLM layers", "language_model", llm_matmuls(config.llm, batch, seq)))
    rows.append(("lm_head", "language_model", lm_head_matmuls(config.llm, batch, seq)))
    return rows


def backward_of(matmul: Matmul, reaches: dict[str, bool], trainable: tuple[str, ...]) -> tuple[int, int]:
    """(activation-gradient FLOPs, weight-gradient FLOPs) of one product's backward."""
    needs_dx = reaches[matmul.reads]
    if matmul.group is None:          # activation x activation: both operands get a gradient
        return 2 * matmul.flops * needs_dx, 0
    return matmul.flops * needs_dx, matmul.flops * (matmul.group in trainable)


def stage_flops(config: DSVLConfig, stage, batch: int, seq: int, images_per_sample: int = 1) -> list[ComponentFlops]:
    """FLOPs of one training step of ``batch`` sequences of ``seq`` tokens, per component.

    ``stage``: a stage name, a StageSpec or a tuple of trainable groups. Every sequence holds
    ``images_per_sample`` images (their g*g tokens count inside ``seq``); 0 makes a text-only batch.
    """
    trainable = trainable_groups(stage)
    reaches = gradient_reaches(config, trainable, batch * images_per_sample)
    out = []
    for name, group, matmuls in components(config, batch, seq, images_per_sample):
        grads = [backward_of(m, reaches, trainable) for m in matmuls]
        out.append(ComponentFlops(name, group, group in trainable, sum(m.flops for m in matmuls),
                                  sum(dx for dx, _ in grads), sum(dw for _, dw in grads)))
    return out


def forward_flops(config: DSVLConfig, batch: int, seq: int, images_per_sample: int = 1) -> int:
    """FLOPs of one forward pass (inference, or any stage's forward)."""
    return sum(m.flops for _, _, matmuls in components(config, batch, seq, images_per_sample) for m in matmuls)


def step_flops(config: DSVLConfig, stage, batch: int, seq: int, images_per_sample: int = 1) -> dict[str, int]:
    """Totals of :func:`stage_flops`: forward, backward and forward + backward."""
    rows = stage_flops(config, stage, batch, seq, images_per_sample)
    forward, backward = sum(r.forward for r in rows), sum(r.backward for r in rows)
    return {"forward": forward, "backward": backward, "total": forward + backward}


# ---------------------------------------------------------------------------------------- the paper's runs
A100_BF16_PEAK = 312e12   # FLOP/s: A100 dense bf16 tensor-core peak (NVIDIA's datasheet)
DEFAULT_MFU = 0.40        # model FLOPs utilisation assumed for the conversion; the CLI's --mfu changes it
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class PaperCluster:
    """What the paper (section 3.3; facts sheet 4.2, "Infrastructure") says a whole training took."""

    preset: str
    size: str          # paper_stage's size: "7b" or "1.3b"
    nodes: int
    gpus_per_node: int
    days: float

    @property
    def gpu_days(self) -> float:
        return self.nodes * self.gpus_per_node * self.days


# 7B: 64 nodes x 8 A100, 5 days. 1.3B: 16 nodes, 7 days (8 A100 a node is stated for the 7B cluster only).
PAPER_CLUSTERS = {"dsvl-7b": PaperCluster("dsvl-7b", "7b", 64, 8, 5),
                  "dsvl-1.3b": PaperCluster("dsvl-1.3b", "1.3b", 16, 8, 7)}


@dataclass(frozen=True)
class RunCost:
    """One stage of a paper run: Table 4's steps x batch x sequence, costed analytically."""

    stage: str
    steps: int
    batch: int
    seq: int
    flops: int       # forward + backward, all steps

    def gpu_days(self, mfu: float = DEFAULT_MFU, peak: float = A100_BF16_PEAK) -> float:
        return self.flops / (peak * mfu * SECONDS_PER_DAY)


def paper_run(preset: str, stages: tuple[str, ...] = ("stage1_adaptor", "stage2_joint", "stage3_sft"),
              images_per_sample: int = 1) -> list[RunCost]:
    """Table 4's runs of ``dsvl-7b`` or ``dsvl-1.3b`` (steps, batch, sequence from ``paper_stage``).

    Every sequence carries ``images_per_sample`` images. Stage 1's sequence length of 512 cannot hold
    an image's 576 tokens, so we read it as the text and add the image tokens (576 + 512 = 1088).
    Stage 2's 70% text-only batches and its sequence packing (several samples, so perhaps several
    images, per 4096 tokens) are not modelled: the LLM's cost, which dominates, does not depend on them.
    """
    from ..training.spec import paper_stage  # not at the top: see trainable_groups

    if preset not in PAPER_CLUSTERS:
        raise ValueError(f"paper runs exist for {', '.join(PAPER_CLUSTERS)}, not {preset!r}")
    config, size = DSVLConfig.from_name(preset), PAPER_CLUSTERS[preset].size
    out = []
    for stage in stages:
        spec = paper_stage(stage, size)
        seq = spec.data.seq_len
        if seq < images_per_sample * config.num_image_tokens:
            seq += images_per_sample * config.num_image_tokens
        step = step_flops(config, stage, spec.data.batch_size, seq, images_per_sample)["total"]
        out.append(RunCost(stage, spec.steps, spec.data.batch_size, seq, step * spec.steps))
    return out


def implied_mfu(flops: float, gpu_days: float, peak: float = A100_BF16_PEAK) -> float:
    """The utilisation at which ``flops`` take exactly ``gpu_days``."""
    return flops / (gpu_days * SECONDS_PER_DAY * peak)
