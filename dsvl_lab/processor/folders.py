"""Where a processor's settings come from: a tokenizer, a preset's config, or a checkpoint folder.

A real DeepSeek-VL folder (original or transformers format) describes its processor in three
JSON files beside ``tokenizer.json``: ``preprocessor_config.json`` (image size, mean, background),
``processor_config.json`` (``num_image_tokens``, the image tag) and ``tokenizer_config.json``
(special tokens, ``model_max_length``). The helpers here read them, tolerating the field names of
both formats, and check that a tokenizer fits the model it is meant for.
:meth:`DSVLProcessor.from_pretrained` and :meth:`DSVLProcessor.from_config` use them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from ..config import BOS_TOKEN, CLIP_MEAN, EOS_TOKEN, IMAGE_TOKEN, PAD_TOKEN, DSVLConfig
from ..data.tokenizer import load_tokenizer
from .errors import ProcessorError


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
