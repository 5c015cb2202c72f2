"""Checking the analytic accounting (``dsvl_lab.metrics.flops``, ``.memory``) against measurement.

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (nothing is allocated, so the
released 7B runs in seconds). What it counts there: matrix products and convolutions, 2*m*k*n each.
On the meta device ``scaled_dot_product_attention`` takes its math path, which FlopCounterMode sees
as two ``bmm`` over the full T x T square (QK^T and AV) forward and four backward; on a real CPU the
fused kernel (``_scaled_dot_product_flash_attention_for_cpu``) is not in its table and attention
counts zero. The analytic formula counts what the meta run counts: full squares, 2x in backward.

Memory: a real forward, backward and AdamW step on the CPU (``dsvl-small-hybrid`` in fp32,
``dsvl-tiny-hybrid`` in bf16), measured as the peak of live tensor bytes (:class:`LiveTensorBytes`):
every storage an operator returns (forward, backward and optimizer all dispatch on this thread)
counts from its creation until Python's weak reference says it is freed; parameters and AdamW state
present before the step count from the start. It is what ``torch.cuda.max_memory_allocated`` reports
on a GPU, without allocator rounding; torch keeps no allocator statistics on the CPU, and
resident-set size would mix in the allocator, the interpreter and other processes. Scratch space
inside a single kernel is not seen (it is not part of the model: outputs and saved tensors are).
We measure the second step, when AdamW's state exists.

Used by ``tests/test_accounting.py`` (at every preset) and by notebook 09 (at miniature size).
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from ..config import DSVLConfig
from ..metrics.flops import stage_flops, trainable_groups
from ..model import DSVLModel
from ..training import apply_freeze


# ============================================================================ FLOPs
def meta_model(name: str) -> DSVLModel:
    with torch.device("meta"):
        model = DSVLModel.from_name(name)
    assert all(p.device.type == "meta" for p in model.parameters()), "the model must build on the meta device"
    return model


def counted_step(model: DSVLModel, trainable, batch: int, seq: int, images: int = 1) -> tuple[int, int]:
    """(forward, backward) FLOPs FlopCounterMode counts for one step with the stage's requires_grad.

    ``DSVLModel.embed_inputs`` counts image tokens with ``int()``, which a meta tensor cannot answer, so
    the image embeddings are put in the sequence by hand (a placement: no FLOPs) and go in as
    ``inputs_embeds``; every product of the real forward runs.
    """
    apply_freeze(model, trainable_groups(trainable))
    for param in model.parameters():
        param.grad = None
    config, width = model.config, model.config.llm.hidden_size
    with torch.device("meta"):
        pixels = torch.rand(batch * images, 3, config.image_size, config.image_size)
        text = torch.randint(10, 100, (batch, seq - images * config.num_image_tokens))
        labels = torch.zeros(batch, seq, dtype=torch.long)
    with FlopCounterMode(display=False) as forward:
        embeds = model.language_model.embed(text)  # [B, T - images*g*g, n]
        if images:
            image_embeds = model.encode_images(pixels).reshape(batch, -1, width)  # [B, images*g*g, n]
            embeds = torch.cat([embeds[:, :2], image_embeds, embeds[:, 2:]], dim=1)
        loss = model(inputs_embeds=embeds, labels=labels).loss
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    return forward.get_total_flops(), backward.get_total_flops()


def analytic_step(config: DSVLConfig, trainable, batch: int, seq: int, images: int = 1) -> tuple[int, int]:
    rows = stage_flops(config, trainable, batch, seq, images)
    return sum(r.forward for r in rows), sum(r.backward for r in rows)



# ============================================================================ memory
class LiveTensorBytes(TorchDispatchMode):
    """Peak of the bytes held by live tensor storages: those given to :meth:`add` and every storage an
    operator returns while the mode is active, each counted once, until it is freed."""

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self.seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def add(self, tensors) -> None:
        for tensor in tensors:
            self._track(tensor)
        self.peak = max(self.peak, self.current)

    def _freed(self, nbytes: int) -> None:
        self.current -= nbytes

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self.seen or storage.nbytes() == 0:  # a view, an in-place result, or empty
            return
        self.seen[storage] = storage.nbytes()
        self.current += storage.nbytes()
        weakref.finalize(storage, self._freed, storage.nbytes())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.add(t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.device.type == "cpu")
        return out


def measured_peak_bytes(name: str, stage: str, batch: int, seq: int, precision: str,
                        checkpointing: bool = False) -> int:
    """Peak live tensor bytes of a training step (forward, backward, AdamW), the second of two."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    from dsvl_lab.model.llm import LlamaLayer
    from dsvl_lab.model.siglip import SigLIPBlock

    torch.manual_seed(0)
    model = DSVLModel.from_name(name)
    apply_freeze(model, trainable_groups(stage))
    if checkpointing:  # as Lightning's activation_checkpointing_policy wraps them
        apply_activation_checkpointing(model, check_fn=lambda m: isinstance(m, (LlamaLayer, SigLIPBlock)))
    config = model.config
    pixels = torch.rand(batch, 3, config.image_size, config.image_size)
    ids = torch.randint(10, 100, (batch, seq))
    ids[:, 2:2 + config.num_image_tokens] = config.image_token_id
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    for _ in range(2):
        mode = LiveTensorBytes()
        mode.add([*model.parameters(), *(v for s in optimizer.state.values() for v in s.values()
                                         if isinstance(v, torch.Tensor)), pixels, ids])
        with mode:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                loss = model(input_ids=ids, pixel_values=pixels, labels=ids).loss  # logits dropped, as in training
            loss.backward()
            del loss
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return mode.peak - pixels.nbytes - ids.nbytes
