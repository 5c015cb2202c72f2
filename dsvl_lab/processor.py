"""Images + conversations -> model batches: what the original DeepSeek-VL code calls the processor.

The original splits this work in two classes, and so does this file (as sections):

* ``VLMImageProcessor`` (image_processing_vlm.py): RGB -> resize the longer side to ``image_size``
  -> pad to a square with the mean colour -> [3, S, S] floats in [0, 1]. No normalisation here:
  each vision tower normalises its own input (SigLIP with 0.5/0.5, SAM with CLIP statistics).
* ``VLChatProcessor`` (processing_vlm.py): writes a conversation with the ``"deepseek"`` sft_format
  (conversation.py), tokenises it with BOS first, replaces every ``<image_placeholder>`` by
  ``num_image_tokens`` image-token ids (576 in the release) and left-pads the batch.

What this file adds, because a workbench trains and the original only ran inference:

* labels for supervised fine-tuning (the original repo has no label code, facts 2.7);
* robust loading of real-world files (16-bit, float, CMYK, transparency, EXIF rotation) and clear
  :class:`ProcessorError` messages for bad input (truncated files, decompression bombs, ...).

Example::

    >>> from dsvl_lab.config import DSVLConfig
    >>> from dsvl_lab.processor import DSVLProcessor
    >>> processor = DSVLProcessor.from_config(DSVLConfig.from_name("dsvl-micro-siglip"))
    >>> conversation = [
    ...     {"role": "user", "content": "<image_placeholder>What is written?", "images": ["photo.jpg"]},
    ...     {"role": "assistant", "content": "hello"},
    ... ]
    >>> batch = processor(conversation)             # doctest: +SKIP
    >>> batch["input_ids"].shape, batch["pixel_values"].shape   # doctest: +SKIP
    (torch.Size([1, 90]), torch.Size([1, 3, 32, 32]))
    >>> processor.decode(batch["labels"][0], skip_special_tokens=False)   # doctest: +SKIP
    ' hello<｜end▁of▁sentence｜>'
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tokenizers import Tokenizer

from dsvl_lab.config import BOS_TOKEN, CLIP_MEAN, EOS_TOKEN, IMAGE_TOKEN, PAD_TOKEN, DSVLConfig
from dsvl_lab.data.tokenizer import SHIPPED_TOKENIZER, load_tokenizer
from dsvl_lab.errors import InputError

IGNORE_INDEX = -100  # label value the cross-entropy loss skips (PyTorch's and the original's ignore_id)
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000  # same default as DSVLConfig.max_image_pixels
MIN_IMAGE_SIDE = 14  # the original's min_size: a very thin image keeps at least 14 pixels across

# The "deepseek" sft_format of the original conversation.py (facts 2.7).
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)
USER, ASSISTANT, SYSTEM = "User", "Assistant", "system"
ROLES = {"user": USER, "assistant": ASSISTANT, "system": SYSTEM}
TURN_SEPARATOR = "\n\n"  # after the system prompt and after each user turn; EOS ends assistant turns

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


class ProcessorError(InputError):
    """Bad input to the processor; the message names the problem and the fix."""


# ============================================================================ image loading
# Real-world files come in many pixel formats. Everything below turns any of them into an upright
# 8-bit RGB PIL image, which is what the original's ``PIL.Image.open(...).convert("RGB")`` assumed.

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


# ============================================================================ VLMImageProcessor
# The three steps of the original image processor, with its exact arithmetic (facts 2.8).

def resize_longer_side(image: Image.Image, size: int, min_size: int = MIN_IMAGE_SIDE) -> Image.Image:
    """Resize so the longer side is ``size``, keeping the aspect ratio.

    Sides are computed like the original, ``int(side / longest * size)`` (truncation; the
    transformers port rounds instead, facts 7.1), and floored at ``min_size``. PIL's bicubic
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


# ============================================================================ the "deepseek" template

@dataclass(frozen=True)
class Message:
    role: str  # "User", "Assistant" or "system"
    content: str
    images: list = field(default_factory=list)


@dataclass(frozen=True)
class Segment:
    """A piece of the prompt text; ``supervised`` pieces (answers and their EOS) get labels."""

    text: str
    supervised: bool


def parse_conversation(conversation: Sequence[dict]) -> list[Message]:
    """Check a conversation (a list of ``{"role", "content", "images"?}`` dicts) and normalise it."""
    if isinstance(conversation, dict) or not isinstance(conversation, (list, tuple)):
        raise ProcessorError("a conversation is a list of message dicts, e.g. "
                             "[{'role': 'user', 'content': 'Hi'}]; got a " + type(conversation).__name__)
    messages = [parse_message(i, m) for i, m in enumerate(conversation)]
    if not any(m.role != SYSTEM for m in messages):
        raise ProcessorError("empty conversation: it needs at least one user or assistant message")
    for i, m in enumerate(messages):
        if m.role == SYSTEM and i != 0:
            raise ProcessorError(f"message {i} is a system message; a system message must come first")
        last = i == len(messages) - 1
        if m.role == ASSISTANT and not m.content and not last:
            raise ProcessorError(f"message {i} (assistant) is empty; only the last assistant message may be "
                                 f"empty (it is then the open 'Assistant:' turn for generation)")
    return messages


def parse_message(index: int, message: Any) -> Message:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise ProcessorError(f"message {index} must be a dict with 'role' and 'content' (and optional "
                             f"'images'); got {message!r:.80}")
    role = ROLES.get(str(message["role"]).lower())
    if role is None:
        raise ProcessorError(f"unknown role {message['role']!r} in message {index}; "
                             f"use 'user', 'assistant' or 'system'")
    if not isinstance(message["content"], str):
        raise ProcessorError(f"message {index}: content must be a string, got {type(message['content']).__name__}")
    images = message.get("images")
    if images is None:
        images = []
    elif not isinstance(images, (list, tuple)):
        images = [images]  # a single image given without a list
    return Message(role, message["content"], list(images))


def chat_segments(messages: list[Message], *, system_prompt: str, eos_token: str,
                  add_generation_prompt: bool) -> list[Segment]:
    """Write the conversation in the original "deepseek" sft_format, cut where the labels change.

    ``system + "\\n\\n"``, then ``"User: " + content + "\\n\\n"`` and
    ``"Assistant: " + answer + EOS`` per turn; an open turn is ``"Assistant:"`` with nothing after.
    The space after ``"Assistant:"`` belongs to the answer segment: byte-level BPE glues a space to
    the word after it ("Ġhello"), so " hello" is how the joint string tokenises, and cutting after
    the space would change the tokens.
    """
    if messages[0].role == SYSTEM:
        system_prompt, messages = messages[0].content, messages[1:]
    segments = [Segment(system_prompt + TURN_SEPARATOR, False)] if system_prompt else []
    for m in messages:
        if m.role == USER:
            segments.append(Segment(f"{USER}: {m.content}{TURN_SEPARATOR}", False))
        else:
            segments.append(Segment(f"{ASSISTANT}:", False))
            if m.content:
                segments.append(Segment(f" {m.content}{eos_token}", True))
    ends_open = messages[-1].role == ASSISTANT and not messages[-1].content
    if add_generation_prompt and not ends_open:
        segments.append(Segment(f"{ASSISTANT}:", False))
    return merge_segments(strip_ends(segments))


def strip_ends(segments: list[Segment]) -> list[Segment]:
    """The original strips the whole prompt (e.g. the "\\n\\n" after a final user turn)."""
    segments = list(segments)
    segments[0] = Segment(segments[0].text.lstrip(), segments[0].supervised)
    segments[-1] = Segment(segments[-1].text.rstrip(), segments[-1].supervised)
    return [s for s in segments if s.text]


def merge_segments(segments: list[Segment]) -> list[Segment]:
    """Join neighbours with the same label flag, so prompt text is tokenised as one string."""
    merged: list[Segment] = []
    for s in segments:
        if merged and merged[-1].supervised == s.supervised:
            merged[-1] = Segment(merged[-1].text + s.text, s.supervised)
        else:
            merged.append(s)
    return merged


# ============================================================================ VLChatProcessor

@dataclass
class EncodedSample:
    input_ids: list[int]
    labels: list[int]
    images: list  # the image sources, in the order of their placeholders


class DSVLProcessor:
    """Turns conversations with images into ``input_ids``, ``attention_mask``, ``labels``, ``pixel_values``.

    Conversation format (the original's, with lower-case roles accepted)::

        [{"role": "system", "content": "..."},                        # optional, replaces the default
         {"role": "user", "content": "<image_placeholder>What is written?", "images": [img]},
         {"role": "assistant", "content": "hello"}]

    Images go in the ``images`` list of any message; they are matched to the ``<image_placeholder>``
    tags of the whole conversation in order. An image is a path, bytes, a binary file, a base64
    data URL, a PIL image or a numpy array.
    """

    def __init__(self, tokenizer: Tokenizer | str | os.PathLike, *, image_size: int, num_image_tokens: int,
                 image_mean: Sequence[float], image_token_id: int, bos_token_id: int, eos_token_id: int,
                 pad_token_id: int, max_length: int, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 background_color: Sequence[int] | None = None, min_size: int = MIN_IMAGE_SIDE,
                 system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> None:
        self.tokenizer = as_tokenizer(tokenizer)
        if image_size < 1 or num_image_tokens < 1 or max_length < 1:
            raise ProcessorError("image_size, num_image_tokens and max_length must be positive")
        self.image_size = image_size
        self.num_image_tokens = num_image_tokens
        self.image_mean = tuple(image_mean)
        if len(self.image_mean) != 3:
            raise ProcessorError(f"image_mean needs one value per RGB channel, got {image_mean}")
        # The original's background_color is int(255 * mean): 127 for SigLIP's 0.5, (122, 116, 104) for CLIP.
        self.background_color = tuple(background_color or (int(255 * m) for m in self.image_mean))
        self.min_size = min_size
        self.max_length = max_length
        self.max_image_pixels = max_image_pixels
        self.system_prompt = system_prompt
        self.image_token_id, self.bos_token_id = image_token_id, bos_token_id
        self.eos_token_id, self.pad_token_id = eos_token_id, pad_token_id
        self.image_tag = self.token_text(image_token_id, "image_token_id")
        self.eos_token = self.token_text(eos_token_id, "eos_token_id")
        self.token_text(bos_token_id, "bos_token_id")
        self.token_text(pad_token_id, "pad_token_id")

    def token_text(self, token_id: int, what: str) -> str:
        text = self.tokenizer.id_to_token(token_id)
        if text is None:
            raise ProcessorError(f"{what}={token_id} is not in the tokenizer (vocab size "
                                 f"{self.tokenizer.get_vocab_size()}); use the tokenizer that goes with the model")
        return text

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_config(cls, config: DSVLConfig, tokenizer: Tokenizer | str | os.PathLike | None = None,
                    ) -> "DSVLProcessor":
        """The processor for a preset; ``tokenizer=None`` loads the shipped miniature tokenizer."""
        if tokenizer is None:
            if not SHIPPED_TOKENIZER.is_file():
                raise ProcessorError(f"the shipped tokenizer {SHIPPED_TOKENIZER} is missing; rebuild it with "
                                     f"`python -m dsvl_lab.data.tokenizer --out {SHIPPED_TOKENIZER}`, "
                                     f"or pass tokenizer=")
            tokenizer = SHIPPED_TOKENIZER
        tokenizer = as_tokenizer(tokenizer)
        check_tokenizer_fits(tokenizer, config)
        return cls(tokenizer, image_size=config.image_size, num_image_tokens=config.num_image_tokens,
                   image_mean=config.processor_mean, image_token_id=config.image_token_id,
                   bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                   pad_token_id=config.pad_token_id, max_length=config.llm.max_position_embeddings,
                   max_image_pixels=config.max_image_pixels)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, max_length: int | None = None,
                        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> "DSVLProcessor":
        """Read a DeepSeek-VL (or transformers DeepseekVL) folder: tokenizer.json plus the JSON configs.

        Token ids are looked up by their strings, as the original does; the pad token falls back to
        EOS when the tokenizer has none (the original's rule).
        """
        folder = Path(folder)
        try:
            tokenizer = load_tokenizer(folder / "tokenizer.json")
        except (FileNotFoundError, ValueError) as err:
            raise ProcessorError(str(err)) from None
        pre = read_json(folder / "preprocessor_config.json", required=True)
        proc = read_json(folder / "processor_config.json")
        tok_cfg = read_json(folder / "tokenizer_config.json")
        image_size, image_mean, background = image_settings(pre, folder)

        def lookup(text: str, what: str) -> int:
            token_id = tokenizer.token_to_id(text)
            if token_id is None:
                raise ProcessorError(f"the tokenizer in {folder} has no {what} token {text!r}")
            return token_id

        eos_id = lookup(token_content(tok_cfg.get("eos_token")) or EOS_TOKEN, "EOS")
        pad_text = token_content(tok_cfg.get("pad_token")) or PAD_TOKEN
        pad_id = tokenizer.token_to_id(pad_text)
        return cls(tokenizer, image_size=image_size, num_image_tokens=int(proc.get("num_image_tokens", 576)),
                   image_mean=image_mean, background_color=background,
                   min_size=int(pre.get("min_size", MIN_IMAGE_SIDE)),
                   image_token_id=lookup(proc.get("image_tag", IMAGE_TOKEN), "image"),
                   bos_token_id=lookup(token_content(tok_cfg.get("bos_token")) or BOS_TOKEN, "BOS"),
                   eos_token_id=eos_id, pad_token_id=eos_id if pad_id is None else pad_id,
                   max_length=max_length or context_length(folder, tok_cfg), max_image_pixels=max_image_pixels)

    # ------------------------------------------------------------------ images
    def load_image(self, source: ImageSource) -> Image.Image:
        return load_image(source, background=self.background_color, max_image_pixels=self.max_image_pixels)

    def preprocess_image(self, source: ImageSource) -> torch.Tensor:
        """One image -> float32 [3, S, S] in [0, 1] (the original VLMImageProcessor, without normalising)."""
        image = resize_longer_side(self.load_image(source), self.image_size, self.min_size)
        return to_tensor(pad_to_square(image, self.background_color))

    def process_images(self, sources: Sequence[ImageSource]) -> torch.Tensor:
        """Several images -> [N, 3, S, S]; [0, 3, S, S] when there are none."""
        if not sources:
            return torch.zeros(0, 3, self.image_size, self.image_size)
        tensors = []
        for index, source in enumerate(sources):
            try:
                tensors.append(self.preprocess_image(source))
            except ProcessorError as err:
                raise ProcessorError(f"image {index} of the batch: {err}") from None
        return torch.stack(tensors)

    # ------------------------------------------------------------------ text
    def apply_chat_template(self, conversation: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text in the "deepseek" format, one ``<image_placeholder>`` per image (not expanded)."""
        segments = self.chat_segments(parse_conversation(conversation), add_generation_prompt)
        return "".join(s.text for s in segments)

    def chat_segments(self, messages: list[Message], add_generation_prompt: bool) -> list[Segment]:
        return chat_segments(messages, system_prompt=self.system_prompt, eos_token=self.eos_token,
                             add_generation_prompt=add_generation_prompt)

    def encode_conversation(self, conversation: Sequence[dict], add_generation_prompt: bool = False,
                            ) -> EncodedSample:
        """One conversation -> token ids with BOS first, labels aligned with them, and its images.

        Labels equal ``input_ids`` on answer tokens and the EOS after each answer, and are -100
        everywhere else (BOS, system prompt, user turns, "Assistant:", image tokens). They are not
        shifted: the model shifts them by one, as transformers' causal LMs do.
        """
        messages = parse_conversation(conversation)
        segments = self.chat_segments(messages, add_generation_prompt)
        images = [image for m in messages for image in m.images]
        self.check_placeholders(sum(s.text.count(self.image_tag) for s in segments), len(images))
        input_ids, labels = [self.bos_token_id], [IGNORE_INDEX]
        for segment in segments:
            ids = self.encode_segment(segment.text)
            input_ids += ids
            labels += [i if segment.supervised and i != self.image_token_id else IGNORE_INDEX for i in ids]
        self.check_length(len(input_ids), len(images))
        return EncodedSample(input_ids, labels, images)

    def encode_segment(self, text: str) -> list[int]:
        """Tokenise text, each ``<image_placeholder>`` becoming ``num_image_tokens`` image ids.

        The original tokenises the tag to one id, deletes it and inserts 576 image ids in its place;
        splitting the text on the tag first gives the same ids.
        """
        ids: list[int] = []
        for index, piece in enumerate(text.split(self.image_tag)):
            if index:
                ids += [self.image_token_id] * self.num_image_tokens
            if piece:
                ids += self.tokenizer.encode(piece, add_special_tokens=False).ids
        return ids

    def encode_text(self, text: str, add_bos: bool = True, add_eos: bool = False) -> list[int]:
        """A language-only sample (no chat template): plain token ids, optionally framed by BOS/EOS."""
        if self.image_tag in text:
            raise ProcessorError(f"encode_text is for text without images but found {self.image_tag}; "
                                 f"use the processor on a conversation with 'images'")
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self.bos_token_id] * add_bos + ids + [self.eos_token_id] * add_eos

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Token ids -> text. Negative ids (the -100 of labels) are dropped, so labels decode too."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode([int(i) for i in ids if i >= 0], skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------ checks
    def check_placeholders(self, num_tags: int, num_images: int) -> None:
        if num_tags != num_images:
            raise ProcessorError(
                f"the conversation has {num_tags} {self.image_tag} placeholder(s) but {num_images} image(s); "
                f"put exactly one {self.image_tag} in the text where each image goes, in order")

    def check_length(self, length: int, num_images: int) -> None:
        if length > self.max_length:
            raise ProcessorError(
                f"the prompt is {length} tokens ({num_images} image(s) x {self.num_image_tokens} tokens "
                f"included), longer than the context of max_length={self.max_length}; shorten the text or "
                f"use fewer images")

    # ------------------------------------------------------------------ batches
    def __call__(self, conversations: Sequence[dict] | Sequence[Sequence[dict]], add_generation_prompt: bool = False,
                 return_labels: bool = True) -> dict[str, Any]:
        """A conversation or a list of them -> a left-padded batch.

        Returns ``input_ids`` [B, T] long, ``attention_mask`` [B, T] (1 real, 0 padding), ``labels``
        [B, T] (-100 on unsupervised and padding positions), ``pixel_values`` [N, 3, S, S] (all
        images of the batch in order; the original instead pads to [B, max_images, 3, S, S]) and
        ``images_per_sample``. Left padding, as the original, so that generation continues every
        row from its last real token.
        """
        samples = [self.encode_conversation(c, add_generation_prompt) for c in as_batch(conversations)]
        batch = self.pad_left(samples)
        if not return_labels:
            del batch["labels"]
        batch["pixel_values"] = self.process_images([image for s in samples for image in s.images])
        batch["images_per_sample"] = [len(s.images) for s in samples]
        return batch

    def pad_left(self, samples: list[EncodedSample]) -> dict[str, torch.Tensor]:
        width = max(len(s.input_ids) for s in samples)
        ids, mask, labels = [], [], []
        for s in samples:
            pad = width - len(s.input_ids)
            ids.append([self.pad_token_id] * pad + s.input_ids)
            mask.append([0] * pad + [1] * len(s.input_ids))
            labels.append([IGNORE_INDEX] * pad + s.labels)
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "attention_mask": torch.tensor(mask, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long)}


# ============================================================================ helpers

def as_batch(conversations: Any) -> list:
    """One conversation (a list of dicts) -> a batch of one; a list of conversations stays as is."""
    if isinstance(conversations, (list, tuple)) and len(conversations) == 0:
        raise ProcessorError("empty conversation: pass a list of message dicts (or a list of such lists)")
    if isinstance(conversations, (list, tuple)) and isinstance(conversations[0], dict):
        return [conversations]
    if isinstance(conversations, (list, tuple)):
        return list(conversations)
    raise ProcessorError(f"pass a conversation (a list of message dicts) or a list of conversations, "
                         f"not a {type(conversations).__name__}")


def as_tokenizer(tokenizer: Any) -> Tokenizer:
    """A tokenizers.Tokenizer, a path to tokenizer.json, or a transformers fast tokenizer."""
    if isinstance(tokenizer, (str, os.PathLike)):
        try:
            return load_tokenizer(tokenizer)
        except (FileNotFoundError, ValueError) as err:
            raise ProcessorError(str(err)) from None
    tokenizer = getattr(tokenizer, "backend_tokenizer", tokenizer)  # transformers PreTrainedTokenizerFast
    if not isinstance(tokenizer, Tokenizer):
        raise ProcessorError(f"tokenizer must be a tokenizers.Tokenizer or a path to tokenizer.json, "
                             f"not a {type(tokenizer).__name__}")
    if tokenizer.padding is not None or tokenizer.truncation is not None:
        # We pad and check lengths ourselves; work on a copy so the caller's object is untouched.
        tokenizer = Tokenizer.from_str(tokenizer.to_str())
        tokenizer.no_padding()
        tokenizer.no_truncation()
    return tokenizer


def check_tokenizer_fits(tokenizer: Tokenizer, config: DSVLConfig) -> None:
    """The tokenizer's ids must fit the embedding table and its special tokens sit at the config's ids."""
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > config.llm.vocab_size:
        raise ProcessorError(f"the tokenizer has {size} entries but {config.name} embeds only "
                             f"llm.vocab_size={config.llm.vocab_size}; use the matching tokenizer or a "
                             f"larger llm.vocab_size")
    expected = {BOS_TOKEN: config.bos_token_id, EOS_TOKEN: config.eos_token_id,
                IMAGE_TOKEN: config.image_token_id}
    for text, config_id in expected.items():
        if tokenizer.token_to_id(text) != config_id:
            raise ProcessorError(f"special token {text!r} is id {tokenizer.token_to_id(text)} in the tokenizer but "
                                 f"{config_id} in the config {config.name}; use the tokenizer that goes with it")
    if tokenizer.id_to_token(config.pad_token_id) not in (PAD_TOKEN, EOS_TOKEN):
        raise ProcessorError(f"pad_token_id={config.pad_token_id} of {config.name} is "
                             f"{tokenizer.id_to_token(config.pad_token_id)!r} in the tokenizer, "
                             f"not {PAD_TOKEN!r} or EOS; use the tokenizer that goes with the config")


def read_json(path: Path, required: bool = False) -> dict:
    if not path.is_file():
        if required:
            raise ProcessorError(f"{path} is missing; a DeepSeek-VL folder holds tokenizer.json, "
                                 f"preprocessor_config.json and processor_config.json")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ProcessorError(f"{path} is not valid JSON ({err}); re-download it") from None


def image_settings(pre: dict, folder: Path) -> tuple[int, tuple, tuple | None]:
    """(image_size, image_mean, background_color) from preprocessor_config.json.

    The original names the fields image_size / image_mean / background_color; the transformers
    port uses size / image_mean and, for the hybrid, high_res_size / high_res_image_mean (our
    processor makes the one high-resolution image, the model derives the low-res view).
    """
    if "image_size" in pre:
        return int(pre["image_size"]), tuple(pre.get("image_mean", CLIP_MEAN)), pre.get("background_color")
    if "high_res_size" in pre:
        mean = tuple(pre.get("high_res_image_mean", CLIP_MEAN))
        return int(pre["high_res_size"]["height"]), mean, None
    if isinstance(pre.get("size"), dict) and "height" in pre["size"]:
        return int(pre["size"]["height"]), tuple(pre.get("image_mean", CLIP_MEAN)), pre.get("background_color")
    raise ProcessorError(f"{folder / 'preprocessor_config.json'} names no image size (image_size, size or "
                         f"high_res_size); is this a DeepSeek-VL checkpoint?")


def token_content(value: Any) -> str | None:
    """tokenizer_config.json stores special tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def context_length(folder: Path, tok_cfg: dict) -> int:
    """The context to enforce: tokenizer model_max_length, else the LLM's max_position_embeddings."""
    declared = tok_cfg.get("model_max_length")
    if isinstance(declared, int) and 0 < declared < 10**7:  # transformers writes ~1e30 for "unset"
        return declared
    language = read_json(folder / "config.json").get("language_config", {})
    return int(language.get("max_position_embeddings", 16384))
