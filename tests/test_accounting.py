"""The analytic FLOPs and memory (dsvl_lab/metrics/flops.py, memory.py) against measurement.

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
"""
from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from dsvl_lab.config import DSVLConfig
from dsvl_lab.metrics.flops import PAPER_CLUSTERS, implied_mfu, paper_run, stage_flops, trainable_groups
from dsvl_lab.metrics.memory import stage_memory
from dsvl_lab.model import DSVLModel
from dsvl_lab.training import STAGE_NAMES, apply_freeze

FLOP_PRESETS = ["dsvl-micro-hybrid", "dsvl-micro-siglip", "dsvl-micro-sam", "dsvl-tiny-hybrid", "dsvl-small-hybrid",
                "dsvl-1.3b", "dsvl-7b"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as on a shared 2-core machine; the suite's setting comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def relative(a: float, b: float) -> float:
    return abs(a - b) / b if b else float(a != 0)


@pytest.fixture(scope="module", params=FLOP_PRESETS)
def preset_model(request):
    return meta_model(request.param)


def test_flops_match_flop_counter_in_every_stage(preset_model):
    config = preset_model.config
    batch, seq = 2, config.num_image_tokens + 40
    for stage in STAGE_NAMES:
        measured = counted_step(preset_model, stage, batch, seq)
        analytic = analytic_step(config, stage, batch, seq)
        for kind, a, m in zip(("forward", "backward"), analytic, measured):
            assert relative(a, m) < 0.02, f"{config.name} {stage} {kind}: analytic {a:.4e}, FlopCounterMode {m:.4e}"


@pytest.mark.parametrize("name, trainable, images", [
    ("dsvl-micro-hybrid", ("vision_model.high", "aligner"), 2),          # SAM's own blocks train: rel-pos grads
    ("dsvl-micro-hybrid[aligner.projector_type=low_high_shared_mlp_gelu]", ("vision_model.low", "aligner"), 1),
    ("dsvl-micro-hybrid[aligner.projector_type=low_high_separate_mlp_gelu,aligner.depth=3]", ("aligner",), 1),
    ("dsvl-micro-siglip[llm.num_kv_heads=2]", ("language_model",), 0),   # a text-only batch, grouped kv heads
])
def test_flops_follow_any_trainable_set(name, trainable, images):
    model = meta_model(name)
    seq = 2 * model.config.num_image_tokens + 9
    measured = counted_step(model, trainable, 3, seq, images)
    analytic = analytic_step(model.config, trainable, 3, seq, images)
    assert [relative(a, m) for a, m in zip(analytic, measured)] == [0.0, 0.0]


def test_frozen_prefix_costs_forward_only_and_a_crossed_module_its_activation_gradients():
    config = DSVLConfig.from_name("dsvl-7b")
    rows = {r.name: r for r in stage_flops(config, "stage1_adaptor", 1, 4096)}
    assert rows["SigLIP"].backward == 0 and rows["SAM global blocks"].backward == 0   # nothing trains before them
    assert rows["LLM layers"].backward_weight == 0 and rows["LLM layers"].backward_input > rows["LLM layers"].forward
    assert rows["lm_head"].backward_input == rows["lm_head"].forward                   # dx only: 1x forward
    stage2 = {r.name: r for r in stage_flops(config, "stage2_joint", 1, 4096)}
    assert stage2["lm_head"].backward == 2 * stage2["lm_head"].forward                 # dx and dW: 2x forward


def test_paper_runs_compare_with_the_papers_gpu_days():
    runs = {run.stage: run for run in paper_run("dsvl-7b")}
    stage2 = runs["stage2_joint"]
    assert (stage2.steps, stage2.batch, stage2.seq) == (42_000, 2304, 4096)
    six_n = 6 * 6.9e9 * 42_000 * 2304 * 4096  # the "6 N D" rule, N ~ 6.9B parameters the step multiplies by
    assert 1.0 < stage2.flops / six_n < 1.15   # plus attention's T x T products and the vision towers
    assert PAPER_CLUSTERS["dsvl-7b"].gpu_days == 2560 and PAPER_CLUSTERS["dsvl-1.3b"].gpu_days == 896
    assert 0.15 < implied_mfu(stage2.flops, 2560) < 0.40


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


def test_live_tensor_bytes_counts_what_is_alive():
    with LiveTensorBytes() as mode:
        a = torch.ones(1000)            # 4000 bytes
        b = a * 2                       # 8000 alive
        del b                           # 4000
        c = a.view(10, 100)             # a view: no new storage
        a.mul_(3)                       # in place: nothing new
        del a, c
    assert (mode.peak, mode.current) == (8000, 0)


def measured_peak(name: str, stage: str, batch: int, seq: int, precision: str, checkpointing: bool = False) -> int:
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


# bf16 matrix products run several times slower than fp32 on this CPU: the bf16 cases use the tiny preset.
@pytest.mark.parametrize("name, stage, batch, seq, precision, checkpointing", [
    ("dsvl-small-hybrid", "stage1_adaptor", 4, 256, "fp32", False),
    ("dsvl-small-hybrid", "stage2_joint", 4, 256, "fp32", False),
    ("dsvl-small-hybrid", "stage3_sft", 4, 256, "fp32", False),
    ("dsvl-small-hybrid", "stage2_joint", 4, 256, "fp32", True),
    ("dsvl-tiny-hybrid", "stage2_joint", 4, 128, "bf16-mixed", False),
    ("dsvl-tiny-hybrid", "stage3_sft", 4, 128, "bf16-mixed", True),
])
def test_memory_matches_a_measured_step(name, stage, batch, seq, precision, checkpointing):
    measured = measured_peak(name, stage, batch, seq, precision, checkpointing)
    estimate = stage_memory(DSVLConfig.from_name(name), stage, batch, seq, precision, checkpointing)
    assert relative(estimate.peak, measured) < 0.15, f"estimate {estimate.peak / 2**20:.1f} MiB, " \
                                                     f"measured {measured / 2**20:.1f} MiB"
    assert estimate.total >= measured  # the plain sum stays an upper bound


def test_memory_formulas_at_the_released_sizes():
    config = DSVLConfig.from_name("dsvl-7b")
    full = stage_memory(config, "stage2_joint", 1, 4096, "bf16-mixed")
    params = meta_model("dsvl-7b").num_params()
    assert full.optimizer == 2 * full.gradients and full.weights > 4 * params  # fp32 master + bf16 copies
    sharded = stage_memory(config, "stage2_joint", 1, 4096, "bf16-mixed", checkpointing=True, fsdp=8)
    assert sharded.optimizer == full.optimizer // 8
    assert sharded.activations < full.activations and sharded.peak < full.peak / 3
    with pytest.raises(ValueError, match="cannot hold"):
        stage_memory(config, "stage2_joint", 1, 100)
