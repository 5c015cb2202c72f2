"""Images + conversations -> model batches: what the original DeepSeek-VL code calls the processor.

The original splits this work in two classes; this package splits it by what a reader needs:

* ``transforms.py``: the original ``VLMImageProcessor`` (image_processing_vlm.py). RGB -> resize the
  longer side to ``image_size`` -> pad to a square with the mean colour -> [3, S, S] floats in
  [0, 1]. No normalisation here: each vision tower normalises its own input (SigLIP with
  0.5/0.5, SAM with CLIP statistics). **Start here**: it is all a model needs from an image.
* ``template.py``: the ``"deepseek"`` sft_format of the original conversation.py.
* ``processing.py``: :class:`DSVLProcessor`, the original ``VLChatProcessor`` (processing_vlm.py):
  writes a conversation with the template, tokenises it with BOS first, replaces every
  ``<image_placeholder>`` by ``num_image_tokens`` image-token ids (576 in the release) and
  left-pads the batch.

What the workbench adds, because it trains and the original only ran inference:

* labels for supervised fine-tuning (the original repo has no label code, docs/deepseek_vl_facts.md 2.7);
* ``loading.py``: robust loading of real-world files (16-bit, float, CMYK, transparency, EXIF
  rotation) and clear :class:`ProcessorError` messages for bad input (truncated files,
  decompression bombs, ...);
* ``folders.py``: settings read from a preset or from a DeepSeek-VL checkpoint folder.

Everything is importable from ``dsvl_lab.processor`` directly. Example::

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

from ..constants import IGNORE_INDEX
from .errors import ProcessorError
from .folders import as_tokenizer, check_tokenizer_fits, context_length, image_settings, read_json, token_content
from .loading import (DEFAULT_MAX_IMAGE_PIXELS, HIGH_BIT_DEPTH_MODES, ImageSource, array_to_image, as_stream,
                      check_image_size, decode_pixels, has_transparency, intended_range, load_image,
                      open_encoded_image, to_rgb, to_uint8, upright)
from .processing import DSVLProcessor, EncodedSample, as_batch
from .template import (ASSISTANT, DEFAULT_SYSTEM_PROMPT, ROLES, SYSTEM, TURN_SEPARATOR, USER, Message, Segment,
                       chat_segments, merge_segments, parse_conversation, parse_message, strip_ends)
from .transforms import MIN_IMAGE_SIDE, mean_colour, pad_to_square, preprocess, resize_longer_side, to_tensor

__all__ = [
    # the processor and its error
    "DSVLProcessor", "EncodedSample", "ProcessorError", "IGNORE_INDEX",
    # transforms.py: the original VLMImageProcessor
    "MIN_IMAGE_SIDE", "mean_colour", "pad_to_square", "preprocess", "resize_longer_side", "to_tensor",
    # loading.py: real-world files
    "DEFAULT_MAX_IMAGE_PIXELS", "HIGH_BIT_DEPTH_MODES", "ImageSource", "array_to_image", "as_stream",
    "check_image_size", "decode_pixels", "has_transparency", "intended_range", "load_image",
    "open_encoded_image", "to_rgb", "to_uint8", "upright",
    # template.py: the "deepseek" chat template
    "ASSISTANT", "DEFAULT_SYSTEM_PROMPT", "ROLES", "SYSTEM", "TURN_SEPARATOR", "USER", "Message", "Segment",
    "chat_segments", "merge_segments", "parse_conversation", "parse_message", "strip_ends",
    # processing.py / folders.py helpers
    "as_batch", "as_tokenizer", "check_tokenizer_fits", "context_length", "image_settings", "read_json",
    "token_content",
]
