"""Image -> tensor: the three steps of the original ``VLMImageProcessor`` (image_processing_vlm.py).

Read this file first; it is all a model needs from an image:

1. :func:`resize_longer_side`: the longer side becomes ``image_size``, the aspect ratio is kept;
2. :func:`pad_to_square`: centre it on a square of the mean colour (the original's ``expand2square``);
3. :func:`to_tensor`: 8-bit RGB -> float32 [3, S, S] in [0, 1].

:func:`preprocess` chains them. The exact arithmetic follows the original (docs/deepseek_vl_facts.md 2.8), so the
pixels match it bit for bit.

There is no normalising step here, on purpose: each vision tower normalises its own input
(SigLIP with mean = std = 0.5, SAM with the CLIP statistics; ``Normalize`` in model/vision.py),
so one processed image feeds both towers of the hybrid. Padding with the mean colour means the
padding becomes (almost) zero after that normalising.

Getting an upright 8-bit RGB image out of a real-world file is the job of ``loading.py``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

MIN_IMAGE_SIDE = 14  # the original's min_size: a very thin image keeps at least 14 pixels across


def mean_colour(image_mean: Sequence[float]) -> tuple[int, ...]:
    """The padding colour: the original's background_color is ``int(255 * mean)`` per channel.

    127 for SigLIP's 0.5, (122, 116, 104) for CLIP's mean.
    """
    return tuple(int(255 * m) for m in image_mean)


def resize_longer_side(image: Image.Image, size: int, min_size: int = MIN_IMAGE_SIDE) -> Image.Image:
    """Resize so the longer side is ``size``, keeping the aspect ratio.

    Sides are computed like the original, ``int(side / longest * size)`` (truncation; the
    transformers port rounds instead, docs/deepseek_vl_facts.md 7.1), and floored at ``min_size``. PIL's bicubic
    resize antialiases when it shrinks, as torchvision's resize of a PIL image does.
    """
    width, height = image.size
    longest = max(width, height)
    min_size = min(min_size, size)  # a miniature image_size below 14 must still give an S x S canvas
    new_width = max(int(width / longest * size), min_size)
    new_height = max(int(height / longest * size), min_size)
    return image.resize((new_width, new_height), Image.Resampling.BICUBIC)


def pad_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Paste the image centred on a square canvas of the mean colour (the original's expand2square).

    Padding with the mean colour means the tower, after normalising, sees zeros there.
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))  # one of the offsets is 0
    return canvas


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> float32 [3, H, W] in [0, 1].

    Rescaled like the original (transformers' ``rescale``): float64 times 1/255, then float32, so
    the values match it bit for bit.
    """
    array = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
    scaled = (array.astype(np.float64) * (1 / 255)).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))  # [3, H, W]


def preprocess(image: Image.Image, size: int, background: tuple[int, int, int],
               min_size: int = MIN_IMAGE_SIDE) -> torch.Tensor:
    """An RGB image -> float32 [3, size, size] in [0, 1]: resize, pad, to tensor (not normalised)."""
    return to_tensor(pad_to_square(resize_longer_side(image, size, min_size), background))
