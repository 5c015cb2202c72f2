"""LLaMA-architecture causal language model (DeepSeek-LLM in the release).

Paper: section 3.1 "Language Model": pre-norm RMSNorm, SwiGLU feed-forward (intermediate about
8/3 of the width), rotary positions, DeepSeek-LLM's tokenizer; the head is not tied to the
embedding. Original code: transformers' ``LlamaForCausalLM`` (checkpoint ``language_model.model.*``
and ``language_model.lm_head``). transformers port: ``model.language_model.*`` and ``lm_head``.

The KV cache is a plain list of per-layer (key, value) tensors, which keeps generation readable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LLMConfig
from .attention import RecordableAttention
from .init import embedding, linear

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class CacheSlot:
    """One layer's keys and values [B, kv heads, T, head_dim] in buffers with room for ``room`` more
    positions: a decoding step writes its position in place (``append``) instead of copying the
    whole cache with ``torch.cat``, which at 1.3B on a CPU took as long as the attention itself
    (benchmarks/README.md, ``inference.py``). ``slot[0]`` / ``slot[1]`` read like a tuple cache."""

    def __init__(self, key: torch.Tensor, value: torch.Tensor, room: int, dtype: torch.dtype | None = None) -> None:
        batch, heads, length, dim = key.shape
        self.keys = key.new_empty(batch, heads, length + room, dim, dtype=dtype or key.dtype)
        self.values = value.new_empty(batch, value.shape[1], length + room, value.shape[3], dtype=dtype or value.dtype)
        self.keys[:, :, :length], self.values[:, :, :length] = key, value
        self.length = length

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.keys, self.values)[index][:, :, :self.length]  # the positions written so far

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key.shape[2]
        if end > self.keys.shape[2]:
            raise RuntimeError(f"the KV cache holds {self.keys.shape[2]} positions, {end} asked: "
                               f"make the GrowingCache with more room")
        self.keys[:, :, self.length:end], self.values[:, :, self.length:end] = key, value
        self.length = end
        return self[0], self[1]


class GrowingCache(list):
    """A KV cache of one :class:`CacheSlot` per layer, copied once from a prompt's cache: generation
    fills it in place, one position a step (``DSVLModel.generate_from_cache``); the prompt's own
    cache is left as it was."""

    def __init__(self, past: KVCache, room: int, dtype: torch.dtype | None = None) -> None:
        super().__init__(CacheSlot(key, value, room, dtype) for key, value in past)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 as LLaMA does."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotary positions (RoPE), "rotate half" layout as in transformers' LLaMA."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", self._inverse_frequencies(None), persistent=False)

    def _inverse_frequencies(self, device) -> torch.Tensor:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
        return 1.0 / (self.theta ** exponents)

    def reset_buffers(self, device) -> None:
        """Recompute the table (after building the model on the meta device)."""
        self.inv_freq = self._inverse_frequencies(device)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq  # [B, T, head_dim / 2]
        angles = torch.cat([freqs, freqs], dim=-1)  # [B, T, head_dim]
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, T, head_dim]; cos/sin: [B, T, head_dim]."""
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    return x * cos + rotate_half(x) * sin


class LlamaAttention(RecordableAttention):
    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.q_proj = linear(config.hidden_size, config.num_heads * self.head_dim, bias=False)
        self.k_proj = linear(config.hidden_size, config.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = linear(config.hidden_size, config.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = linear(config.num_heads * self.head_dim, config.hidden_size, bias=False)

    def _split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, heads, self.head_dim).transpose(1, 2)  # [B, heads, T, head_dim]

    def forward(self, x, cos, sin, mask, past: tuple[torch.Tensor, torch.Tensor] | None):
        batch, tokens, _ = x.shape
        query = apply_rotary(self._split_heads(self.q_proj(x), self.num_heads), cos, sin)
        key = apply_rotary(self._split_heads(self.k_proj(x), self.num_kv_heads), cos, sin)
        value = self._split_heads(self.v_proj(x), self.num_kv_heads)
        value_dtype = value.dtype  # what o_proj is given back, whatever dtype the cache attends in
        if isinstance(past, CacheSlot):  # written in place into the room a GrowingCache keeps
            key, value = past.append(key, value)
            query = query.to(key.dtype)  # the cache may hold a wider dtype than the model (fp32 on a CPU)
        elif past is not None:  # keys/values of earlier positions, already rotated
            key = torch.cat([past[0], key], dim=2)
            value = torch.cat([past[1], value], dim=2)
        present = (key, value)
        if self.num_kv_heads != self.num_heads:  # grouped-query attention: share each kv head
            repeat = self.num_heads // self.num_kv_heads
            key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
        out = self._attend(query, key, value, mask=mask, is_causal=mask is None)  # [B, heads, T, head_dim]
        out = out.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim).to(value_dtype)
        return self.o_proj(out), present


class SwiGLU(nn.Module):
    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.gate_proj = linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, mask, past):
        attended, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), present


def attention_mask_4d(attention_mask: torch.Tensor | None, query_len: int, past_len: int,
                      device: torch.device) -> torch.Tensor | None:
    """Boolean [B, 1, Tq, Tk] mask (True = may attend): causal and not padding.

    ``attention_mask`` is [B, past_len + query_len] with 1 on real tokens. Returns None when there
    is no padding and no cache, so the fused causal kernel can be used. A padding query row would
    have nothing to attend to (softmax of all -inf is NaN), so every position may attend to itself.
    """
    if attention_mask is None or bool(attention_mask.all()):
        if past_len == 0:
            return None
        # With a cache the fused kernel's causal mask would be aligned wrongly (top-left), so be explicit.
        attention_mask = torch.ones(1, past_len + query_len, dtype=torch.bool, device=device)
    key_len = past_len + query_len
    query_pos = torch.arange(past_len, key_len, device=device)[:, None]  # [Tq, 1]
    key_pos = torch.arange(key_len, device=device)[None, :]  # [1, Tk]
    causal = key_pos <= query_pos  # [Tq, Tk]
    keep = causal[None] & attention_mask.bool()[:, None, :]  # [B, Tq, Tk]
    keep = keep | (key_pos == query_pos)[None]
    return keep[:, None]  # [B, 1, Tq, Tk]


def positions_from_mask(attention_mask: torch.Tensor | None, batch: int, query_len: int, past_len: int,
                        device: torch.device) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding aware)."""
    if attention_mask is None:
        return torch.arange(past_len, past_len + query_len, device=device).expand(batch, -1)
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)[:, past_len:]


class LlamaDecoder(nn.Module):
    """Embedding, the stack of layers and the final norm (``LlamaModel``)."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.embed_tokens = embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta)

    def forward(self, inputs_embeds, attention_mask=None, position_ids=None, past_key_values: KVCache | None = None,
                use_cache: bool = False):
        batch, tokens, _ = inputs_embeds.shape
        past_len = past_key_values[0][0].shape[2] if past_key_values else 0
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask, batch, tokens, past_len, inputs_embeds.device)
        cos, sin = self.rotary(position_ids, inputs_embeds.dtype)
        mask = attention_mask_4d(attention_mask, tokens, past_len, inputs_embeds.device)
        x = inputs_embeds
        presents: KVCache = []
        for index, layer in enumerate(self.layers):
            past = past_key_values[index] if past_key_values else None
            x, present = layer(x, cos, sin, mask, past)
            presents.append(present)
        return self.norm(x), (presents if use_cache else None)


class LanguageModel(nn.Module):
    """``LlamaForCausalLM``: the decoder (``.model``) and an untied output head (``.lm_head``)."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaDecoder(config)
        self.lm_head = linear(config.hidden_size, config.vocab_size, bias=False)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    def forward(self, inputs_embeds, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False):
        hidden, presents = self.model(inputs_embeds, attention_mask, position_ids, past_key_values, use_cache)
        return self.lm_head(hidden), presents
