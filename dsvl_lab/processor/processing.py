"""``DSVLProcessor``: images + conversations -> model batches (the original's ``VLChatProcessor``).

It composes the other parts of this package:

* ``loading.py`` reads an image from any source (:func:`~.loading.load_image`);
* ``transforms.py`` makes it [3, S, S] (:func:`~.transforms.preprocess`, the original's
  ``VLMImageProcessor``);
* ``template.py`` writes the conversation in the "deepseek" chat template, cut into supervised
  and unsupervised segments;
* ``folders.py`` reads the settings of a preset or of a DeepSeek-VL checkpoint folder.

What it does itself is the original processing_vlm.py's work: tokenise with BOS first, replace
each ``<image_placeholder>`` by ``num_image_tokens`` image-token ids (576 in the release), and
left-pad the batch; plus labels for fine-tuning (``IGNORE_INDEX`` = -100 outside the answers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from tokenizers import Tokenizer

from ..config import BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, PAD_TOKEN, DSVLConfig
from ..constants import IGNORE_INDEX
from ..data.tokenizer import SHIPPED_TOKENIZER, load_tokenizer
from .errors import ProcessorError
from .folders import as_tokenizer, check_tokenizer_fits, context_length, image_settings, read_json, token_content
from .loading import DEFAULT_MAX_IMAGE_PIXELS, ImageSource, load_image
from .template import DEFAULT_SYSTEM_PROMPT, Message, Segment, chat_segments, parse_conversation
from .transforms import MIN_IMAGE_SIDE, mean_colour, preprocess


@dataclass
class EncodedSample:
    """One conversation, tokenised: ids with BOS first, labels aligned with them, its image sources."""

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
        # Padding colour: the folder's background_color if it names one, else the original's int(255 * mean).
        self.background_color = tuple(background_color or mean_colour(self.image_mean))
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
        return preprocess(self.load_image(source), self.image_size, self.background_color, self.min_size)

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
