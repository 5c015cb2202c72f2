"""The image of a line: its path kept inside the sample folder, its size read from the header, then decoded.

A downloaded sample file is input from outside: its image path could point anywhere the user can
read, and its image could be a decompression bomb. Both are refused before a pixel is decoded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from .errors import DataError

# The processor's default (DSVLConfig.max_image_pixels); not imported from dsvl_lab.processor,
# which imports torch, so that `dsvl-lab data check` stays quick. A test keeps the three equal.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


def resolve_image_path(value: str, folder: Path, allow_outside_paths: bool) -> Path:
    """The image path of a line, resolved (``..`` and symlinks) and kept inside ``folder`` unless allowed."""
    allow = "pass allow_outside_paths=True (dsvl-lab data check --allow-outside-paths) if you trust the file"
    if Path(value).is_absolute() and not allow_outside_paths:
        raise DataError(f"outside the sample folder: {value!r} is an absolute path; image paths are relative to "
                        f"the sample file's folder {folder}: make it relative, or {allow}", key="image")
    try:
        resolved = (folder / value).resolve()
    except (OSError, ValueError, RuntimeError) as error:  # a NUL byte, a symlink loop
        raise DataError(f"bad path: {value!r} cannot be resolved ({error}); fix the path", key="image") from None
    if not allow_outside_paths and not resolved.is_relative_to(folder):
        # Without this, a downloaded sample file could point at any file the user can read.
        raise DataError(f"outside the sample folder: {value!r} resolves to {resolved}, outside the sample file's "
                        f"folder {folder} (through '..' or a symlink); move the image into the folder, or {allow}",
                        key="image")
    return resolved


def image_header_size(path: Path, max_image_pixels: int) -> tuple[int, int]:
    """Width and height from the file's header (no pixel decoded), refused over ``max_image_pixels``."""
    try:
        if not path.is_file():
            raise DataError(f"missing image: {path} does not exist or is not a file; fix the path", key="image")
        with warnings.catch_warnings():
            # PIL only *warns* between its own limit and twice that; make the warning an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"image too large: {path} is over PIL's pixel limit ({error}); downscale the image",
                        key="image") from None
    except Exception as error:  # PIL raises several types for broken files; the OS for unreadable ones
        raise DataError(f"unreadable image: {path} ({type(error).__name__}: {error}); re-export it as PNG or "
                        f"JPEG", key="image") from None
    width, height = size
    if width * height > max_image_pixels:
        raise DataError(f"image too large: {path} has {width}x{height} = {width * height:,} pixels, over the "
                        f"pixel limit of {max_image_pixels:,} (max_image_pixels, a guard against decompression "
                        f"bombs); downscale the image, or raise max_image_pixels if you trust the file", key="image")
    return size


def decode_image(path: Path, max_image_pixels: int) -> Image.Image:
    """Decode with the processor's safe loader (EXIF rotation, 16-bit, transparency, truncated files)."""
    # Imported here, not at the top: the processor package imports torch (about 1.5 s), which
    # `dsvl-lab data preview` / `export` never need: only a check that decodes an image pays for it.
    from ...processor import ProcessorError, load_image

    try:
        return load_image(path, max_image_pixels=max_image_pixels)
    except ProcessorError as error:
        raise DataError(f"unreadable image: {error.problem}", key="image") from None
