"""SAM-B image encoder: the high-resolution, fine-detail tower of DeepSeek-VL.

Paper: "SAM-B" (section 3.1): a 1024x1024 input, a 64x64x256 feature map from the neck, which the
VL adaptor interpolates to 96x96 and shrinks with two stride-2 convolutions to 24x24x1024.
Original code: ``sam.py`` (``ImageEncoderViT``, config "sam_b_downsample"); in the checkpoint
``vision_model.vision_tower_high.vision_tower.*``. transformers: ``SamVisionModel`` plus
``high_res_vision_neck`` / ``high_res_vision_proj`` / ``high_res_vision_alpha`` in
``DeepseekVLHybridModel``.

Structure (ViTDet): patch conv, learned absolute positions on the 2-D grid, blocks with windowed
attention except a few global blocks, decomposed relative position bias in every block, a conv
neck. DeepSeek-VL adds an "HD" branch the paper does not describe: the output of the first global
block goes through a second neck (``neck_hd``) and is added to the main branch with a learnable
scalar ``hd_alpha_downsamples`` that starts at 0, after both branches pass the shared
interpolation + stride-2 convs (``downsamples``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SAMConfig
from .attention import RecordableAttention
from .init import conv2d, linear, position_table
from .siglip import PatchEmbed


def relative_position_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """Rows of a [2*size-1, head_dim] table for every (query, key) offset: [size, size, head_dim]."""
    if table.shape[0] != 2 * size - 1:
        raise ValueError(f"relative position table has {table.shape[0]} rows, expected {2 * size - 1} for size {size}")
    coords = torch.arange(size, device=table.device)
    offsets = coords[:, None] - coords[None, :] + (size - 1)  # [size, size], 0 .. 2*size-2
    return table[offsets]


def decomposed_relative_bias(query: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                             height: int, width: int) -> torch.Tensor:
    """MViTv2's decomposed relative position bias, as an additive attention mask.

    query: [B, heads, H*W, head_dim] (not yet scaled). Returns [B, heads, H*W, H*W].
    The bias for query (h, w) and key (kh, kw) is q . Rh[h - kh] + q . Rw[w - kw].
    """
    batch, heads, _, head_dim = query.shape
    table_h = relative_position_table(rel_pos_h, height)  # [H, H, head_dim]
    table_w = relative_position_table(rel_pos_w, width)  # [W, W, head_dim]
    q = query.reshape(batch * heads, height, width, head_dim)
    bias_h = torch.einsum("bhwc,hkc->bhwk", q, table_h)  # [B*heads, H, W, H]
    bias_w = torch.einsum("bhwc,wkc->bhwk", q, table_w)  # [B*heads, H, W, W]
    bias = bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]  # [B*heads, H, W, H, W]
    return bias.reshape(batch, heads, height * width, height * width)


class SAMAttention(RecordableAttention):
    """Self-attention over an H x W grid of tokens with decomposed relative positions."""

    def __init__(self, width: int, num_heads: int, grid_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = width // num_heads
        self.qkv = linear(width, 3 * width)
        self.proj = linear(width, width)
        # grid_size is the window side for windowed blocks and the full grid for global ones.
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, H*W, head_dim]
        bias = decomposed_relative_bias(query, self.rel_pos_h, self.rel_pos_w, height, width)
        out = self._attend(query, key, value, mask=bias)  # [B, heads, H*W, head_dim]
        out = out.transpose(1, 2).reshape(batch, height, width, channels)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B, H, W, C] -> [B * nWindows, window, window, C], zero-padding H and W up to multiples of window.

    Padded tokens take part in attention, as in the original (it pads after norm1, with zeros).
    """
    batch, height, width, channels = x.shape
    pad_h = (window - height % window) % window
    pad_w = (window - width % window) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    padded_h, padded_w = height + pad_h, width + pad_w
    x = x.reshape(batch, padded_h // window, window, padded_w // window, window, channels)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)
    return windows, (padded_h, padded_w)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int],
                       original: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B * nWindows, window, window, C] -> [B, H, W, C]."""
    padded_h, padded_w = padded
    batch = windows.shape[0] // ((padded_h // window) * (padded_w // window))
    x = windows.reshape(batch, padded_h // window, padded_w // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_h, padded_w, -1)
    return x[:, : original[0], : original[1], :].contiguous()


class SAMMLP(nn.Module):
    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = linear(width, mlp_dim)
        self.lin2 = linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class SAMBlock(nn.Module):
    """A ViTDet block; ``window_size == 0`` means global attention over the whole grid."""

    def __init__(self, config: SAMConfig, window_size: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.attn = SAMAttention(config.width, config.num_heads, window_size or config.grid)
        self.norm2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.mlp = SAMMLP(config.width, config.mlp_dim)

    @property
    def is_global(self) -> bool:
        return self.window_size == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, H, W, C]
        shortcut = x
        x = self.norm1(x)
        if self.is_global:
            x = self.attn(x)
        else:
            height, width = x.shape[1:3]
            windows, padded = window_partition(x, self.window_size)  # [B*nW, w, w, C]
            x = window_unpartition(self.attn(windows), self.window_size, padded, (height, width))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a [B, C, H, W] map (SAM's ``LayerNorm2d``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # [B, H, W, C]
        x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # [B, C, H, W]


def make_neck(width: int, channels: int, eps: float) -> nn.Sequential:
    """Conv1x1 -> LayerNorm2d -> Conv3x3 -> LayerNorm2d; indexes 0..3 match the original keys."""
    return nn.Sequential(
        conv2d(width, channels, kernel_size=1, bias=False),
        LayerNorm2d(channels, eps),
        conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(channels, eps),
    )


class SAMEncoder(nn.Module):
    """[B, 3, S, S] normalised images -> [B, g*g, 4 * neck_channels] features on the token grid g.

    ``token_grid`` is g, the side of the grid the language model receives (24 in the release,
    equal to SigLIP's 384 / 16). The neck output (S / patch per side) is interpolated to 4g x 4g and
    two stride-2 convs bring it to g x g, so any SAM resolution lines up with SigLIP's tokens.
    """

    def __init__(self, config: SAMConfig, token_grid: int) -> None:
        super().__init__()
        self.config = config
        self.token_grid = token_grid
        self.patch_embed = PatchEmbed(config.patch_size, config.width)
        self.pos_embed = position_table(1, config.grid, config.grid, config.width, std=0.0)
        self.blocks = nn.ModuleList(
            SAMBlock(config, 0 if i in config.global_attn_indexes else config.window_size)
            for i in range(config.depth)
        )
        channels = config.neck_channels
        self.neck = make_neck(config.width, channels, config.layer_norm_eps)
        self.neck_hd = make_neck(config.width, channels, config.layer_norm_eps)
        self.downsamples = nn.Sequential(
            conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False),
            conv2d(2 * channels, 4 * channels, kernel_size=3, stride=2, padding=1, bias=False),
        )
        self.hd_alpha_downsamples = nn.Parameter(torch.zeros(1))

    @property
    def hd_block_index(self) -> int:
        """The block whose output feeds the HD branch: the first global-attention block."""
        return min(self.config.global_attn_indexes)

    def downsample(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, G, G] neck output -> [B, 4C, g, g]: interpolate to 4g, then two stride-2 convs."""
        dtype = features.dtype
        size = 4 * self.token_grid
        # The original interpolates in float32 and casts back (matters in bf16/fp16 only).
        features = F.interpolate(features.float(), size=(size, size), mode="bilinear", align_corners=False)
        return self.downsamples(features.to(dtype))  # [B, C, 4g, 4g] -> [B, 2C, 2g, 2g] -> [B, 4C, g, g]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"SAM expects {size}x{size} images, got {tuple(images.shape[-2:])}")
        x = self.patch_embed(images).permute(0, 2, 3, 1)  # [B, G, G, width], channels last
        x = x + self.pos_embed
        hd_features = None
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.hd_block_index:
                hd_features = x
        main = self.downsample(self.neck(x.permute(0, 3, 1, 2)))  # [B, 4C, g, g]
        hd = self.downsample(self.neck_hd(hd_features.permute(0, 3, 1, 2)))  # [B, 4C, g, g]
        fused = main + self.hd_alpha_downsamples * hd
        return fused.flatten(2).transpose(1, 2)  # [B, g*g, 4C], row-major like SigLIP's patches
