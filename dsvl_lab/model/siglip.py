"""SigLIP vision transformer: the low-resolution, semantic tower of DeepSeek-VL.

Paper: "SigLIP-L" (section 3.1, 384x384 input, 576 tokens of width 1024).
Original code: ``siglip_vit.py`` (a timm VisionTransformer, config "siglip_large_patch16_384"),
wrapped by ``CLIPVisionTower``; in the checkpoint ``vision_model[.vision_tower_low].vision_tower.*``.
transformers: ``SiglipVisionModel``.

A plain pre-LN ViT: patch conv, learned absolute positions, no class token, blocks of
(LayerNorm -> attention -> residual, LayerNorm -> MLP with exact GELU -> residual), a final
LayerNorm, and every patch token is returned (the release uses select_layer=-1 and never runs
the MAP pooling head, so it is not built here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SigLIPConfig
from .attention import RecordableAttention
from .init import conv2d, linear, position_table


class SigLIPAttention(RecordableAttention):
    """Multi-head self-attention with a fused qkv projection (timm ``Attention``)."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = linear(width, 3 * width)
        self.proj = linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, head_dim]
        out = self._attend(query, key, value)  # [B, heads, N, head_dim]
        out = out.transpose(1, 2).reshape(batch, tokens, width)  # [B, N, width]
        return self.proj(out)


class SigLIPMLP(nn.Module):
    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.fc1 = linear(width, mlp_dim)
        self.fc2 = linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as timm; HF's default is tanh


class SigLIPBlock(nn.Module):
    def __init__(self, config: SigLIPConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.attn = SigLIPAttention(config.width, config.num_heads)
        self.norm2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.mlp = SigLIPMLP(config.width, config.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> vectors, as one strided convolution (timm ``PatchEmbed``)."""

    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images)  # [B, 3, S, S] -> [B, width, g, g]


class SigLIPViT(nn.Module):
    """[B, 3, S, S] normalised images -> [B, g*g, width] patch features (g = S / patch)."""

    def __init__(self, config: SigLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.width)
        self.pos_embed = position_table(1, config.grid**2, config.width, std=0.02)
        self.blocks = nn.ModuleList(SigLIPBlock(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=config.layer_norm_eps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"SigLIP expects {size}x{size} images, got {tuple(images.shape[-2:])}")
        x = self.patch_embed(images)  # [B, width, g, g]
        x = x.flatten(2).transpose(1, 2)  # [B, g*g, width], row-major patch order
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)  # [B, g*g, width]
