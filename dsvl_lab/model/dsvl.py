"""DSVLModel: the whole DeepSeek-VL model (vision tower -> aligner -> language model).

Paper: figure 2 / section 3.1. Original code: ``MultiModalityCausalLM`` (``modeling_vlm.py``)
with children ``vision_model``, ``aligner``, ``language_model``; transformers:
``DeepseekVLForConditionalGeneration`` / ``DeepseekVLHybridForConditionalGeneration``.

Data flow for a batch with N images in total and g*g tokens per image:
  images [N, 3, S, S] -> vision_model -> [N, g*g, D] (or the hybrid pair) -> aligner -> [N, g*g, n]
  input_ids [B, T] -> embed_tokens -> [B, T, n]; the positions holding the image token id are
  overwritten, in order, with the N*g*g image vectors -> language_model -> logits [B, T, vocab].
The loss is next-token cross-entropy on positions whose label is not -100 (text only).

Which pixels go in depends on ``config.pixel_input`` (see ``vision.py``): a preset model takes raw
[0, 1] images and normalises inside each tower like the original; a model made by
``dsvl_lab.convert.from_hf`` takes exactly the tensors the transformers model takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DSVLConfig
from .aligner import Aligner
from .attention import RecordableAttention
from .files import load_pretrained, save_pretrained
from .llm import GrowingCache, KVCache, LanguageModel
from .vision import VisionModel

from ..constants import IGNORE_INDEX  # one definition for the model, processor and evaluation


@dataclass
class DSVLOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor | None  # None under loss_only
    past_key_values: KVCache | None = None


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t, skipping labels of -100."""
    shifted_logits = logits[:, :-1].float()  # [B, T-1, vocab]
    shifted_labels = labels[:, 1:].to(logits.device)  # [B, T-1]
    return F.cross_entropy(shifted_logits.reshape(-1, shifted_logits.shape[-1]), shifted_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def supervised_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
    """``causal_lm_loss`` computed from the final hidden states [B, T, n], with the output head run only
    at the positions whose next token is supervised: the same value (up to summation order), without
    the vocabulary projection of image tokens and prompts, which a training batch mostly holds."""
    shifted_labels = labels[:, 1:].to(hidden.device)  # [B, T-1]
    supervised = shifted_labels != IGNORE_INDEX  # [B, T-1]
    logits = lm_head(hidden[:, :-1][supervised]).float()  # [n supervised, vocab]
    return F.cross_entropy(logits, shifted_labels[supervised])


class DSVLModel(nn.Module):
    def __init__(self, config: DSVLConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_model = VisionModel(config)
        self.aligner = Aligner(config)
        self.language_model = LanguageModel(config.llm)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_name(cls, name: str, **overrides) -> "DSVLModel":
        """A randomly initialised model of a preset, e.g. ``DSVLModel.from_name("dsvl-micro-hybrid")``."""
        return cls(DSVLConfig.from_name(name, **overrides))

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "DSVLModel":
        """Load a local folder: ours, transformers' (DeepseekVL[Hybrid]) or the original DeepSeek-VL format.

        Keywords: ``config``, ``dtype``, ``pixel_input`` (see :func:`dsvl_lab.model.files.load_pretrained`).
        The two foreign formats are read by :mod:`dsvl_lab.convert`, which registers itself on import.
        The foundation weights of stage 1 are :func:`dsvl_lab.foundation.from_foundation`.
        """
        return load_pretrained(path, model_class=cls, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``model.safetensors`` and ``dsvl_config.json`` into ``path`` (atomically)."""
        save_pretrained(self, path)

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ attention recording
    def attention_layers(self) -> dict[str, RecordableAttention]:
        """Every attention layer by its module name, e.g. ``language_model.model.layers.0.self_attn``."""
        return {name: module for name, module in self.named_modules() if isinstance(module, RecordableAttention)}

    def record_attention(self, names: list[str] | None = None, on: bool = True) -> None:
        """Switch the explicit-softmax recording path on (or off) for the named layers (all if None)."""
        layers = self.attention_layers()
        unknown = sorted(set(names or []) - set(layers))
        if unknown:
            raise ValueError(f"no attention layer named {unknown}; see model.attention_layers() for the names")
        for name, layer in layers.items():
            if names is None or name in names:
                layer.record_attention = on
                layer.attention_weights = None

    # ------------------------------------------------------------------ forward
    def encode_images(self, pixel_values: torch.Tensor, high_res_pixel_values: torch.Tensor | None = None):
        """Images -> aligned image embeddings [N, g*g, LLM width]."""
        return self.aligner(self.vision_model(pixel_values, high_res_pixel_values))

    def embed_inputs(self, input_ids: torch.Tensor, pixel_values=None, high_res_pixel_values=None,
                     image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the image-token positions overwritten by image embeddings, in order."""
        embeds = self.language_model.embed(input_ids)  # [B, T, n]
        image_positions = input_ids == self.config.image_token_id  # [B, T]
        n_tokens = int(image_positions.sum())
        if image_embeds is None and pixel_values is not None and pixel_values.shape[0] > 0:
            image_embeds = self.encode_images(pixel_values, high_res_pixel_values)
        n_features = 0 if image_embeds is None else image_embeds.shape[0] * image_embeds.shape[1]
        if n_tokens != n_features:
            n_images = 0 if image_embeds is None else image_embeds.shape[0]
            raise ValueError(
                f"input_ids hold {n_tokens} image tokens (id {self.config.image_token_id}) but {n_images} image(s) "
                f"give {n_features} image embeddings ({self.config.num_image_tokens} per image). Put exactly one "
                f"<image_placeholder> per image in the prompt and let DSVLProcessor expand it."
            )
        if n_features == 0:
            return embeds
        image_embeds = image_embeds.to(embeds.dtype).reshape(-1, embeds.shape[-1])  # [N*g*g, n]
        return embeds.masked_scatter(image_positions[..., None], image_embeds)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        high_res_pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        inputs_embeds: torch.Tensor | None = None,
        loss_only: bool = False,
        **unused,
    ) -> DSVLOutput:
        """Keyword names follow transformers' ``DeepseekVLHybridForConditionalGeneration``.

        input_ids [B, T]; attention_mask [B, T] (1 = real token, left padding); pixel_values
        [N, 3, S, S] (all images of the batch, in order); labels [B, T] with -100 where no loss.
        ``loss_only=True`` (training, with labels): the output head runs only where a label supervises
        the next token, and ``logits`` is None (``supervised_loss``).
        """
        unknown = {k for k, v in unused.items() if v is not None and k not in ("images_per_sample", "return_dict")}
        if unknown:
            raise TypeError(f"DSVLModel.forward got unexpected arguments {sorted(unknown)}")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, pixel_values, high_res_pixel_values)
        if loss_only and labels is not None:
            hidden, presents = self.language_model.model(inputs_embeds, attention_mask, position_ids, past_key_values,
                                                         use_cache)
            return DSVLOutput(loss=supervised_loss(hidden, labels, self.language_model.lm_head), logits=None,
                              past_key_values=presents)
        logits, presents = self.language_model(inputs_embeds, attention_mask, position_ids, past_key_values, use_cache)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return DSVLOutput(loss=loss, logits=logits, past_key_values=presents)

    # ------------------------------------------------------------------ generation
    def prefill(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Run a prompt once: (last-position logits [B, vocab], the KV cache of every position).

        The output head runs on the last position only: that is all generation needs, and the
        vocabulary projection of every prompt position would cost as much as a layer or more.
        """
        hidden, past = self.language_model.model(inputs_embeds, attention_mask, use_cache=True)  # [B, T, n]
        return self.language_model.lm_head(hidden[:, -1]), past

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        high_res_pixel_values: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        eos_token_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        streamer: Callable[[torch.Tensor], None] | None = None,
        image_embeds: torch.Tensor | None = None,
        **unused,
    ) -> torch.Tensor:
        """Continue each prompt; returns only the new tokens [B, n_new] (pad id after a row's EOS).

        Greedy by default; ``do_sample=True`` samples with temperature / top-k / top-p. Stops when
        every row has produced EOS. ``streamer`` is called with each step's tokens [B].
        ``image_embeds`` (from ``encode_images``) replaces ``pixel_values`` when the images are
        already encoded. ``use_cache=False`` recomputes the whole sequence every step (slow; used
        to check the cache).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prompt_embeds = self.embed_inputs(input_ids, pixel_values, high_res_pixel_values, image_embeds)  # [B, T, n]
        self._check_context(prompt_embeds.shape[1] + max_new_tokens)
        sampling = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                        eos_token_id=eos_token_id, generator=generator, streamer=streamer)
        if use_cache:
            logits, past = self.prefill(prompt_embeds, attention_mask)
            return self.generate_from_cache(logits, past, attention_mask, max_new_tokens, **sampling)

        sequence = {"embeds": prompt_embeds, "mask": attention_mask}

        def recompute(next_token: torch.Tensor) -> torch.Tensor:  # the whole sequence again, no cache
            sequence["embeds"] = torch.cat([sequence["embeds"], self.language_model.embed(next_token[:, None])], 1)
            sequence["mask"] = torch.cat([sequence["mask"], torch.ones_like(sequence["mask"][:, :1])], 1)
            return self.forward(inputs_embeds=sequence["embeds"], attention_mask=sequence["mask"]).logits[:, -1]

        first = self.forward(inputs_embeds=prompt_embeds, attention_mask=attention_mask).logits[:, -1]
        return self._decode(first, recompute, max_new_tokens, **sampling)

    @torch.no_grad()
    def generate_from_cache(self, logits: torch.Tensor, past: KVCache, attention_mask: torch.Tensor,
                            max_new_tokens: int, **sampling) -> torch.Tensor:
        """Continue prompts already run by ``prefill``: ``logits`` [B, vocab] of their last position,
        ``past`` their KV cache, ``attention_mask`` [B, T] their padding. New tokens [B, n_new].

        The cache is copied once into buffers with room for the new tokens (``GrowingCache``), which
        each step fills in place; ``past`` itself is not changed. On a CPU the copy is fp32: attention
        of one query over a bf16 cache ran 6.5x slower there than over fp32 (1.95 against 0.30 ms a
        layer at 1.3B's shapes, 641 positions; benchmarks/README.md, ``inference.py``).
        """
        cache = GrowingCache(past, room=max_new_tokens, dtype=torch.float32 if logits.device.type == "cpu" else None)
        state = {"mask": attention_mask}

        def step(next_token: torch.Tensor) -> torch.Tensor:  # one new position, written into the cache
            state["mask"] = torch.cat([state["mask"], torch.ones_like(state["mask"][:, :1])], dim=1)
            out = self.forward(inputs_embeds=self.language_model.embed(next_token[:, None]),  # [B, 1, n]
                               attention_mask=state["mask"], past_key_values=cache)
            return out.logits[:, -1]

        return self._decode(logits, step, max_new_tokens, **sampling)

    def _decode(self, logits: torch.Tensor, step: Callable[[torch.Tensor], torch.Tensor], max_new_tokens: int,
                do_sample: bool = False, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                eos_token_id: int | None = None, generator: torch.Generator | None = None,
                streamer: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """The generation loop: pick a token from ``logits``, stop rows at EOS, and get the next
        position's logits from ``step(token)`` until every row is done or ``max_new_tokens``."""
        eos = self.config.eos_token_id if eos_token_id is None else eos_token_id
        batch = logits.shape[0]
        finished = torch.zeros(batch, dtype=torch.bool, device=logits.device)
        new_tokens: list[torch.Tensor] = []
        for index in range(max_new_tokens):
            if index:
                logits = step(new_tokens[-1])
            next_token = self._pick(logits, do_sample, temperature, top_k, top_p, generator)  # [B]
            next_token = torch.where(finished, torch.full_like(next_token, self.config.pad_token_id), next_token)
            new_tokens.append(next_token)
            if streamer is not None:
                streamer(next_token)
            finished |= next_token == eos
            if bool(finished.all()):
                break
        return torch.stack(new_tokens, dim=1) if new_tokens else logits.new_zeros(batch, 0, dtype=torch.long)

    def _check_context(self, total_length: int) -> None:
        limit = self.config.llm.max_position_embeddings
        if total_length > limit:
            raise ValueError(
                f"prompt + max_new_tokens = {total_length} tokens exceeds the context of {limit}; "
                f"shorten the prompt or lower max_new_tokens"
            )

    @staticmethod
    def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, top_p: float,
              generator: torch.Generator | None) -> torch.Tensor:
        """The next token from last-position logits [B, vocab]."""
        if not do_sample:
            return logits.argmax(dim=-1)
        logits = logits.float() / max(temperature, 1e-5)
        if top_k > 0:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
