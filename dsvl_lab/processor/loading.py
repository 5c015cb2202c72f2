"""Real-world image files -> an upright 8-bit RGB PIL image, or a clear :class:`ProcessorError`.

The original DeepSeek-VL code reads an image with ``PIL.Image.open(path).convert("RGB")`` and
assumes the rest. A workbench that trains on other people's files meets 16-bit PNGs, float TIFFs,
CMYK JPEGs, transparent logos, photos stored sideways with an EXIF rotation tag, truncated
downloads and decompression bombs. Everything here exists for those files; none of it changes a
plain 8-bit RGB image. The model-facing steps that follow (resize, pad, to tensor) are in
``transforms.py``.

Entry point: :func:`load_image` (a path, bytes, a binary file, a base64 data URL, a PIL image or a
numpy array). Size limits are checked from the file header, before a single pixel is decoded.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ProcessorError

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000  # same default as DSVLConfig.max_image_pixels

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]

# PIL modes with more than 8 bits a channel: scaled down by to_uint8, not clipped as convert() would.
HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def load_image(source: ImageSource, *, background: tuple[int, int, int] = (127, 127, 127),
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """A path, encoded bytes, a binary file, a PIL image or a numpy array -> upright 8-bit RGB image.

    Transparent pixels are composited onto ``background`` (the padding colour), so a logo on a
    transparent canvas looks the same as its padding instead of sitting on black.
    """
    if isinstance(source, Image.Image):
        check_image_size(source.size, max_image_pixels, "the PIL image")
        decode_pixels(source, "the PIL image")
        return to_rgb(upright(source), background)
    if isinstance(source, np.ndarray):
        return to_rgb(array_to_image(source, max_image_pixels), background)
    with open_encoded_image(source, max_image_pixels) as image:
        return to_rgb(upright(image), background)


def open_encoded_image(source: Any, max_image_pixels: int) -> Image.Image:
    """Open a file / bytes / base64 data URL, check its size from the header, then decode eagerly."""
    stream, name = as_stream(source)
    try:
        # PIL only *warns* between its own limit and twice that; make the warning an error too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except FileNotFoundError:
        raise ProcessorError(f"image file not found: {name}; check the path") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ProcessorError(f"{name} is over PIL's pixel limit (Image.MAX_IMAGE_PIXELS = "
                             f"{Image.MAX_IMAGE_PIXELS:,}): {err}; downscale the image, or raise both "
                             f"PIL.Image.MAX_IMAGE_PIXELS and max_image_pixels if you trust it") from None
    except UnidentifiedImageError:
        raise ProcessorError(f"{name} is not an image PIL can read (cannot identify its format); "
                             f"check that it is a JPEG, PNG, WebP, GIF, BMP or TIFF file") from None
    except OSError as err:
        raise ProcessorError(f"cannot read {name}: {err}; check the path and permissions") from None
    try:
        # Image.open only parsed the header: refuse a giant image before decoding a single pixel.
        check_image_size(image.size, max_image_pixels, name)
        decode_pixels(image, name)
    except ProcessorError:
        image.close()
        raise
    return image


def as_stream(source: Any) -> tuple[Any, str]:
    """What Image.open accepts (a path or a binary file), plus a name for error messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), "the image bytes"
    if isinstance(source, str) and source.startswith("data:image"):
        import base64  # the original accepts base64 data URLs too (DeepSeek-VL PR #51)

        return io.BytesIO(base64.b64decode(source.split(",", 1)[-1])), "the base64 image"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), repr(os.fspath(source))
    if hasattr(source, "read"):
        return source, "the image file object"
    raise ProcessorError(f"cannot read an image from a {type(source).__name__}; pass a path, bytes, a binary "
                         f"file, a PIL.Image.Image or a numpy array (HxW or HxWxC)")


def decode_pixels(image: Image.Image, name: str) -> None:
    """Decode now, so a truncated or corrupt file fails here with a clear message, not deep in a batch."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ProcessorError(f"{name} is over PIL's pixel limit: {err}; downscale the image first") from None
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, zlib.error... on bad data
        raise ProcessorError(f"{name} is truncated or corrupt ({err}); re-download or re-export the "
                             f"file") from None


def check_image_size(size: tuple[int, int], max_image_pixels: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ProcessorError(f"{name} is a zero-size image ({width}x{height}); drop the sample or fix the file")
    if width * height > max_image_pixels:
        raise ProcessorError(
            f"{name} has {width}x{height} = {width * height:,} pixels, over the pixel limit of "
            f"{max_image_pixels:,} (max_image_pixels, a guard against decompression bombs); downscale "
            f"the image, or raise max_image_pixels if you trust the file")


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag: phones store photos sideways and only *tag* the rotation."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block should not make readable pixels unusable
        return image


def array_to_image(array: np.ndarray, max_image_pixels: int) -> Image.Image:
    """HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) array of any numeric dtype -> PIL image."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ProcessorError(f"cannot read a numpy array of shape {array.shape} as an image; pass HxW (grey) "
                             f"or HxWx3 / HxWx4 (channels last); a CxHxW array needs .transpose(1, 2, 0)")
    height, width = array.shape[:2]
    check_image_size((width, height), max_image_pixels, "the numpy array")
    return Image.fromarray(np.ascontiguousarray(to_uint8(array)))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale pixel values of any dtype to 0..255 by the range they are meant to span (no clipping).

    Clipping is what PIL's own ``convert("L")`` does to 16-bit images: everything above 255 turns
    white. We divide by the full range instead, so a 16-bit photo looks like its 8-bit version.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = intended_range(array.dtype, values)
    scaled = (values - low) / (high - low) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def intended_range(dtype: np.dtype, values: np.ndarray) -> tuple[float, float]:
    """The value range an image of this dtype is meant to span; guessed from the values if unknown.

    uint16 is 0..65535. Floats within [0, 1] are 0..1. Other non-negative values up to 255 are
    8-bit data in a wider type, up to 65535 16-bit data (PIL's "I" mode holds 16-bit PNGs in old
    Pillows). Anything else (negative, huge, HDR floats) is stretched from its min to its max.
    """
    if dtype.kind == "u" and dtype.itemsize == 2:
        return 0.0, 65535.0
    low, high = float(values.min()), float(values.max())
    if low >= 0.0:
        if dtype.kind == "f" and high <= 1.0:
            return 0.0, 1.0
        if high <= 255.0:
            return 0.0, 255.0
        if dtype.kind in "iu" and high <= 65535.0:
            return 0.0, 65535.0
    return low, high if high > low else low + 1.0


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode -> RGB: high bit depths scaled, transparency composited onto ``background``."""
    if image.mode in HIGH_BIT_DEPTH_MODES:
        image = Image.fromarray(to_uint8(np.asarray(image)))  # -> 8-bit greyscale "L"
    if has_transparency(image):
        rgba = image.convert("RGBA")  # also turns a palette's or a tRNS chunk's transparent colour into alpha
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, RGBX ...
    except ValueError as err:
        raise ProcessorError(f"cannot convert an image in PIL mode {image.mode!r} to RGB ({err}); "
                             f"re-export it as an RGB PNG or JPEG") from None


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info

