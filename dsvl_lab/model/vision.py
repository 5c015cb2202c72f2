"""The vision tower: SigLIP alone, SAM alone, or both ("hybrid vision encoder").

Paper: section 3.1 "Hybrid Vision Encoder": SigLIP-L at 384x384 sees semantics, SAM-B at
1024x1024 sees fine detail; both give 576 tokens on the same 24x24 grid.
Original code: ``CLIPVisionTower`` (one tower) and ``HybridVisionTower`` (``vision_tower_high`` =
SAM, ``vision_tower_low`` = SigLIP) in ``clip_encoder.py``. Here the two towers are ``high`` and
``low``, the names the training stages use for freezing.

Input conventions (see ``DSVLConfig.pixel_input``):
- ``"raw"``: [0, 1] images at the processor's size. Each tower normalises its own input with its
  own statistics, and the hybrid tower derives the low-res view from the high-res image by an
  antialiased bilinear resize inside the model, exactly as the original does.
- ``"normalized"``: transformers' convention: already normalised pixels; the hybrid tower gets the
  low-res view as ``pixel_values`` and the high-res view as ``high_res_pixel_values``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DSVLConfig
from .sam import SAMEncoder
from .siglip import SigLIPViT


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers only, nothing to train or store."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.mean_values, self.std_values = tuple(mean), tuple(std)
        self.register_buffer("mean", self._channels(self.mean_values, None), persistent=False)
        self.register_buffer("std", self._channels(self.std_values, None), persistent=False)

    @staticmethod
    def _channels(values, device) -> torch.Tensor:
        return torch.tensor(values, device=device).view(1, 3, 1, 1)

    def reset_buffers(self, device) -> None:
        """Recreate the statistics (after building the model on the meta device)."""
        self.mean = self._channels(self.mean_values, device)
        self.std = self._channels(self.std_values, device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)


def resize_antialiased(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize to size x size (torchvision ``Resize(size, antialias=True)``)."""
    if images.device.type == "mps":  # antialiased bilinear is not implemented on MPS (DeepSeek-VL #11)
        return resize_antialiased(images.cpu(), size).to(images.device)
    # The antialiased kernel has no bf16/fp16 implementation on CPU: resize in float32, cast back.
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized.to(images.dtype)


class VisionModel(nn.Module):
    """Images -> per-image token features on the g x g grid.

    Returns [N, g*g, D] for one tower, or the pair (high [N, g*g, 4C], low [N, g*g, D]) for the
    hybrid, which the hybrid aligner projects and concatenates.
    """

    def __init__(self, config: DSVLConfig) -> None:
        super().__init__()
        self.encoder = config.encoder
        self.normalize_inside = config.pixel_input == "raw"
        self.low_res_view_from = config.low_res_view_from
        if config.siglip is not None:
            self.low = SigLIPViT(config.siglip)
            self.low_normalize = Normalize(config.siglip.pixel_mean, config.siglip.pixel_std)
        if config.sam is not None:
            self.high = SAMEncoder(config.sam, config.token_grid)
            self.high_normalize = Normalize(config.sam.pixel_mean, config.sam.pixel_std)

    def _low(self, images: torch.Tensor) -> torch.Tensor:
        return self.low(self.low_normalize(images) if self.normalize_inside else images)

    def _high(self, images: torch.Tensor) -> torch.Tensor:
        return self.high(self.high_normalize(images) if self.normalize_inside else images)

    def forward(self, pixel_values: torch.Tensor, high_res_pixel_values: torch.Tensor | None = None):
        if self.encoder == "siglip":
            if self.low_res_view_from:  # the hybrid's own low-res view of a larger image (config.low_res_view_from)
                pixel_values = resize_antialiased(pixel_values, self.low.config.image_size)
            return self._low(pixel_values)
        if self.encoder == "sam":
            return self._high(high_res_pixel_values if high_res_pixel_values is not None else pixel_values)
        if self.normalize_inside:
            if high_res_pixel_values is not None:
                raise ValueError(
                    "a preset hybrid model takes one raw [0, 1] high-res image as pixel_values and derives the "
                    "low-res view itself; pass only pixel_values "
                    "(high_res_pixel_values is for models from convert.from_hf)"
                )
            high_images = pixel_values
            low_images = resize_antialiased(pixel_values, self.low.config.image_size)
        else:
            if high_res_pixel_values is None:
                raise ValueError(
                    "this hybrid model uses the transformers convention: pass the normalised low-res view as "
                    "pixel_values and the normalised high-res view as high_res_pixel_values"
                )
            high_images, low_images = high_res_pixel_values, pixel_values
        return self._high(high_images), self._low(low_images)
