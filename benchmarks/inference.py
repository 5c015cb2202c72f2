"""Inference speed and memory of the released layouts: image encoding, prefill, decode, peak memory.

What is measured, per preset (default ``dsvl-1.3b`` and ``dsvl-7b``, random weights, bf16, CPU), each
in a fresh Python process so that its peak memory is its own:

  image encoding  the vision tower(s) and the aligner on one image at the preset's size
                  (384 px SigLIP for 1.3B; 1024 px SAM + its 384 px SigLIP view for 7B);
  prefill         one image + 64 prompt tokens (BOS, 576 image tokens, 64 text tokens) through the
                  LLM, building the KV cache;
  decode          N new tokens, greedy, one at a time with the cache (the steps of
                  ``DSVLModel.generate``): tokens/s and the median time per token;
  peak memory     the process's peak resident memory (VmHWM) from the build on, the bandwidth
                  buffers left out (and, on CUDA, the peak of torch's allocator).

Why decode is compared with memory bandwidth: generating one token multiplies a single vector by
every weight matrix of the LLM, about 2 FLOPs per weight read, so the machine spends its time
reading weights, not computing. The fastest any implementation can decode is therefore

    bound tokens/s = memory bandwidth / bytes of LLM weights read per token

and the fraction of that bound we reach says how much is left on the table. Both sides come from
the same process. Decode speed is 1 / the median time of a decode step. The bandwidth is
``dst.copy_(src)`` of a 1 GiB tensor (bytes read + bytes written over the time, best of 5, the
STREAM "copy" convention), measured before the model is built and again after it is freed; the
better of the two is used. The bytes per token are every LLM parameter at its dtype (all decoder
layers, their norms, the final norm and the untied ``lm_head``) EXCEPT the input embedding table,
of which a token reads only its own row; the JSON also records the LLM total with the table. The
KV cache is not in the bound: it is reported beside it (``kv_bytes_read_per_token_avg``; note that
``LlamaAttention`` appends to it with ``torch.cat``, which copies the whole cache every step). As
context, the same run times a matrix-vector product with 4096 x 4096 weights in bf16 and fp32: a
CPU without bf16 instructions (AVX2 only) converts every weight to fp32 on the fly, which can make
bf16 decode compute-bound rather than bandwidth-bound.

Random weights, built fast: the model is built on the meta device (shapes only), given real memory
with ``to_empty`` and then filled cheaply (:func:`fill_random`): every matrix with a fresh block of
2**20 uniform values in +-1/sqrt(fan_in) (the scale of the workbench's own init), copied over the
rest of the tensor; norm scales 1, biases 0. Speed does not depend on the values as long as they
are finite normal numbers (dense kernels take no shortcuts on values), and this fills the 7B at
memory speed (about 600 M values/s on one core here, mostly first-touch page faults) instead of
drawing 7.3 billion numbers with torch's serial random generator (about 190 M/s in bf16, ~40 s).
The values are not a trained model's: the generated tokens mean nothing. ``--verify`` (on with
``--quick``) checks that the timed phases give exactly the tokens of ``DSVLModel.generate``.

Targets (issue 18): ``dsvl-7b`` in bf16 peaks within 24 GB (10**9 bytes; on CUDA, the allocator's
peak); ``dsvl-1.3b`` in bf16 decodes at >= 60% of the bandwidth bound. The exit status is 1 when a
target is missed (or a run was refused). Results print as a table, as ONE JSON line, and are written
atomically to ``benchmarks/results/<name>.json``.

Before building, each child compares the bytes the run needs (weights, KV cache, 2 GB of working
room) with ``MemAvailable`` of /proc/meminfo (or the free GPU memory) and refuses with a message if
they do not fit.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.config import DSVLConfig
from dsvl_lab.model import DSVLModel
from dsvl_lab.model.files import rebuild_buffers
from dsvl_lab.model.llm import GrowingCache
from dsvl_lab.model.init import fan_in_bound

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLE = """Examples:
  python benchmarks/inference.py --quick                       # smoke run: micro/tiny presets, ~20 s
  python benchmarks/inference.py --preset dsvl-1.3b            # one released layout
  python benchmarks/inference.py                               # dsvl-1.3b and dsvl-7b, bf16, CPU
  python benchmarks/inference.py --device cuda                 # the same on a GPU
"""
PRESETS = ["dsvl-1.3b", "dsvl-7b"]
QUICK_PRESETS = ["dsvl-micro-siglip", "dsvl-tiny-hybrid"]  # the two layouts (SigLIP only, hybrid), miniature
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
GB = 1e9
MEMORY_LIMIT_GB = 24.0  # dsvl-7b target
BOUND_FRACTION_TARGET = 0.60  # dsvl-1.3b target
WORKING_ROOM_GB = 2.0  # activations (SAM's 4096-token attention bias and scores, logits), Python, slack
FILL_BLOCK = 2**20
REFUSED = 3  # exit status of a child that refused to run (not enough memory)


def log(message: str) -> None:
    """Progress goes to stderr: stdout carries the child's JSON."""
    print(message, file=sys.stderr, flush=True)


# ============================================================================ timing and memory
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device):
    """(result of ``function()``, seconds), waiting for the GPU on both sides."""
    synchronize(device)
    started = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - started


def peak_memory(device: torch.device) -> dict:
    """Peak resident memory of this process so far (VmHWM), and on CUDA the peak of torch's allocator.

    Not ``ru_maxrss``: on Linux a child started by ``subprocess`` inherits its parent's peak in
    ``ru_maxrss`` at exec, while VmHWM is the child's own (and can be reset, :func:`reset_peak_memory`).
    """
    peak = {"peak_rss_gb": status_kib("VmHWM") * 1024 / GB}
    if device.type == "cuda":
        peak["cuda_peak_allocated_gb"] = torch.cuda.max_memory_allocated(device) / GB
        peak["cuda_peak_reserved_gb"] = torch.cuda.max_memory_reserved(device) / GB
    return peak


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (not Linux?)")


def reset_peak_memory(device: torch.device) -> bool:
    """Forget the peaks so far (the bandwidth and gemv buffers): write 5 to /proc/self/clear_refs (Linux >= 4.0)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:  # then the peak also covers the 2 x --copy-mb bandwidth buffers, freed before the build
        return False


def available_gb(device: torch.device) -> float:
    """Memory a new allocation can get: MemAvailable of /proc/meminfo, or the GPU's free memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / GB
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / GB
    raise RuntimeError("no MemAvailable in /proc/meminfo (not Linux?)")


# ============================================================================ the machine's own speeds
def copy_bandwidth_gbs(device: torch.device, size_mb: int, repeats: int = 5) -> float:
    """Best of ``repeats`` of ``dst.copy_(src)``: (bytes read + bytes written) / seconds, in GB/s."""
    src = torch.ones(size_mb * 2**20 // 2, dtype=torch.bfloat16, device=device)  # written: pages are real
    dst = torch.zeros_like(src)
    best = min(timed(lambda: dst.copy_(src), device)[1] for _ in range(repeats))
    return 2 * src.nbytes / best / GB


def gemv_speed(device: torch.device, repeats: int = 12) -> dict:
    """x[1, 4096] @ W[4096, 4096]^T in bf16 and fp32: median ms and weight GB/s (4 weights in turn, beyond L3)."""
    result = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        weights = [torch.rand(4096, 4096, device=device).to(dtype) for _ in range(4)]
        x = torch.rand(1, 4096, device=device).to(dtype)
        for weight in weights:
            F.linear(x, weight)  # warm-up
        times = [timed(lambda: F.linear(x, weights[i % 4]), device)[1] for i in range(repeats)]
        seconds = statistics.median(times)
        result[name] = {"ms": 1e3 * seconds, "weight_gbs": weights[0].nbytes / seconds / GB}
    result["bf16_over_fp32_time"] = result["bf16"]["ms"] / result["fp32"]["ms"]
    return result


# ============================================================================ the model
def meta_model(preset: str, dtype: torch.dtype) -> DSVLModel:
    """The model with shapes only (no memory, about a second even for 7B), parameters in ``dtype``."""
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            return DSVLModel.from_name(preset).eval()
    finally:
        torch.set_default_dtype(torch.float32)


def weight_bytes(model: DSVLModel) -> dict:
    """Parameter count; bytes of all parameters, of the LLM's, and of what one decode step reads.

    A decode step reads every LLM weight except the input embedding table, of which it reads one row.
    """
    def nbytes(named) -> int:
        return sum(p.numel() * p.element_size() for _, p in named)

    llm = list(model.language_model.named_parameters())
    return {"parameters": model.num_params(), "all": nbytes(model.named_parameters()), "llm": nbytes(llm),
            "llm_read_per_token": nbytes((n, p) for n, p in llm if not n.startswith("model.embed_tokens."))}


def kv_cache_bytes(config: DSVLConfig, tokens: int, dtype: torch.dtype) -> int:
    """Keys and values of every layer for ``tokens`` positions."""
    llm = config.llm
    return 2 * llm.num_layers * tokens * llm.num_kv_heads * llm.head_dim * torch.finfo(dtype).bits // 8


def check_fits(needed_gb: float, device: torch.device, preset: str) -> None:
    """Refuse (exit status REFUSED) before allocating anything when the run would not fit."""
    free = available_gb(device)
    if needed_gb > free:
        log(f"REFUSED {preset}: it needs about {needed_gb:.1f} GB (weights, KV cache, {WORKING_ROOM_GB} GB working "
            f"room) but only {free:.1f} GB is available on {device.type} (MemAvailable / free GPU memory); "
            f"close other programs, use a smaller preset, or a machine with more memory")
        sys.exit(REFUSED)


@torch.no_grad()
def fill_random(model: DSVLModel, seed: int = 0) -> None:
    """Cheap random weights: each matrix gets 2**20 fresh U(-b, b) values (b = 1/sqrt(fan_in)), tiled.

    Parameters of two or more dimensions (Linear, Conv2d, Embedding, position tables): the random
    block, then the filled part copied onto the rest (doubling, so a few large copies). 1-D
    parameters: norm scales (``weight``) 1, everything else (biases, SAM's mixing scalar) 0.
    """
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            flat = parameter.view(-1)
            if parameter.dim() < 2:
                flat.fill_(1.0 if name == "weight" else 0.0)
                continue
            bound = fan_in_bound(parameter)
            filled = min(FILL_BLOCK, flat.numel())
            flat[:filled].uniform_(-bound, bound, generator=generator)
            while filled < flat.numel():
                step = min(filled, flat.numel() - filled)
                flat[filled:filled + step].copy_(flat[:step])
                filled += step


def build(preset: str, dtype: torch.dtype, device: torch.device) -> DSVLModel:
    """Meta device -> real (uninitialised) memory on ``device`` -> cheap random fill -> buffers."""
    model = meta_model(preset, dtype).to_empty(device=device)
    fill_random(model)
    rebuild_buffers(model)  # RoPE frequencies and pixel statistics were made on the meta device
    return model


def make_inputs(config: DSVLConfig, prompt_tokens: int, dtype: torch.dtype, device: torch.device) -> dict:
    """BOS, one image's placeholder tokens, ``prompt_tokens`` random text tokens; one random raw image."""
    generator = torch.Generator().manual_seed(0)
    n_image = config.num_image_tokens
    ids = torch.randint(4, min(config.llm.vocab_size, 4000), (1, 1 + n_image + prompt_tokens), generator=generator)
    ids[0, 0] = config.bos_token_id
    ids[0, 1:1 + n_image] = config.image_token_id
    pixels = torch.rand(1, 3, config.image_size, config.image_size, generator=generator)
    return {"input_ids": ids.to(device), "pixel_values": pixels.to(device, dtype)}


# ============================================================================ the three phases
def encode(model: DSVLModel, pixels: torch.Tensor) -> torch.Tensor:
    """Vision tower(s) + aligner: [1, 3, S, S] -> [1, image tokens, LLM width]."""
    return model.encode_images(pixels)


def prefill(model: DSVLModel, input_ids: torch.Tensor, image_embeds: torch.Tensor | None):
    """The whole prompt through the LLM at once: (first new token [1], KV cache, attention mask)."""
    embeds = model.embed_inputs(input_ids, image_embeds=image_embeds)
    mask = torch.ones_like(input_ids)
    out = model(inputs_embeds=embeds, attention_mask=mask, use_cache=True)
    return out.logits[:, -1].argmax(-1), out.past_key_values, mask


def decode(model: DSVLModel, token: torch.Tensor, past, mask: torch.Tensor, steps: int, device: torch.device):
    """``steps`` greedy steps of one token each, as ``DSVLModel.generate`` does.

    Returns (tokens [steps + 1], seconds per step, final KV cache, whether every step's logits were finite).
    """
    tokens, seconds, finite = [token], [], True
    # as generate_from_cache: each step writes its position in place; fp32 on a CPU (bf16 attention is slow there)
    cache = GrowingCache(past, room=steps, dtype=torch.float32 if device.type == "cpu" else None)
    for _ in range(steps):
        def step():
            extended = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            embeds = model.language_model.embed(tokens[-1][:, None])
            out = model(inputs_embeds=embeds, attention_mask=extended, past_key_values=cache)
            return out.logits[:, -1], extended

        (logits, mask), took = timed(step, device)
        tokens.append(logits.argmax(-1))
        seconds.append(took)
        finite = finite and bool(torch.isfinite(logits).all())  # random weights must still give numbers
    return torch.cat(tokens), seconds, [(slot[0], slot[1]) for slot in cache], finite


def linear_pass_s(model: DSVLModel, device: torch.device, repeats: int = 3) -> float:
    """Seconds for every linear layer of the LLM (``lm_head`` included) on one token, back to back: the
    matrix-vector products a decode step cannot avoid, with nothing else. Its bytes over this time is
    what torch's matrix-vector kernel reads per second here, so bytes / bandwidth over it is the
    highest fraction of the bound any decode built on that kernel can reach (median of ``repeats``)."""
    layers = [m for m in model.language_model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {m.in_features: torch.rand(1, 1, m.in_features, device=device, dtype=m.weight.dtype) for m in layers}

    def one_pass():
        for layer in layers:
            layer(inputs[layer.in_features])

    one_pass()  # warm-up
    return statistics.median(timed(one_pass, device)[1] for _ in range(repeats))


def warm_up(model: DSVLModel, config: DSVLConfig, device: torch.device) -> None:
    """A text-only 8-token prefill and 2 decode steps: first-call costs (kernel choice, allocator) out of the timing."""
    ids = torch.full((1, 8), config.bos_token_id, device=device)
    token, past, mask = prefill(model, ids, None)
    decode(model, token, past, mask, 2, device)


def same_as_generate(model: DSVLModel, inputs: dict, tokens: torch.Tensor) -> bool:
    """Check (``--verify``): our phases produce the tokens ``DSVLModel.generate`` produces, greedy."""
    expected = model.generate(**inputs, max_new_tokens=len(tokens), eos_token_id=-1)  # -1: never stop early
    return bool(torch.equal(expected[0], tokens))


# ============================================================================ one preset, in its own process
def measure(args) -> dict:
    """Everything for one preset (runs in the child process)."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    config = DSVLConfig.from_name(args.child)
    sequence = 1 + config.num_image_tokens + args.prompt_tokens
    sizes = weight_bytes(meta_model(args.child, dtype))
    kv_final = kv_cache_bytes(config, sequence + args.decode_tokens, dtype)
    needed_gb = (sizes["all"] + kv_final) / GB + WORKING_ROOM_GB
    check_fits(max(needed_gb, 2 * args.copy_mb * 2**20 / GB), device, args.child)
    result = {"preset": args.child, "device": device.type, "dtype": args.dtype, "threads": torch.get_num_threads(),
              "parameters": sizes["parameters"], "weight_bytes": sizes,
              "needed_gb_estimate": needed_gb, "available_gb_before": available_gb(device),
              "image_tokens": config.num_image_tokens, "image_size": config.image_size,
              "prompt_tokens": args.prompt_tokens, "sequence": sequence, "decode_tokens": args.decode_tokens}
    log(f"{args.child}: {result['parameters'] / 1e6:,.1f}M parameters, {sizes['all'] / GB:.3f} GB in {args.dtype}, "
        f"needs about {needed_gb:.1f} GB of {result['available_gb_before']:.1f} GB available")
    bandwidth_before = copy_bandwidth_gbs(device, args.copy_mb)
    result["gemv_4096"] = gemv_speed(device)
    log(f"  copy bandwidth {bandwidth_before:.1f} GB/s; gemv 4096^2 bf16 {result['gemv_4096']['bf16']['ms']:.2f} ms, "
        f"fp32 {result['gemv_4096']['fp32']['ms']:.2f} ms")
    result["peak_reset"] = reset_peak_memory(device)  # from here on the peak is the model's
    result.update(run_model(args, config, dtype, device))  # the model lives only inside this call
    gc.collect()
    bandwidth_after = copy_bandwidth_gbs(device, args.copy_mb)
    result["copy_bandwidth_gbs"] = {"before": bandwidth_before, "after": bandwidth_after,
                                    "used": max(bandwidth_before, bandwidth_after)}
    return summarise(result)


def run_model(args, config: DSVLConfig, dtype: torch.dtype, device: torch.device) -> dict:
    """Build the model, warm up, then time encoding, prefill and decode; numbers only come back."""
    result = {}
    model, result["build_s"] = timed(lambda: build(args.child, dtype, device), device)
    result["memory_after_build"] = peak_memory(device)
    log(f"  built in {result['build_s']:.1f} s, peak RSS {result['memory_after_build']['peak_rss_gb']:.2f} GB")
    inputs = make_inputs(config, args.prompt_tokens, dtype, device)
    with torch.inference_mode():
        warm_up(model, config, device)
        image_embeds, result["encode_s"] = timed(lambda: encode(model, inputs["pixel_values"]), device)
        result["memory_after_encode"] = peak_memory(device)
        log(f"  image encoding {result['encode_s']:.2f} s")
        (token, past, mask), result["prefill_s"] = timed(
            lambda: prefill(model, inputs["input_ids"], image_embeds), device)
        result["memory_after_prefill"] = peak_memory(device)
        log(f"  prefill of {inputs['input_ids'].shape[1]} tokens {result['prefill_s']:.2f} s")
        tokens, seconds, past, result["logits_finite"] = decode(model, token, past, mask, args.decode_tokens, device)
        result["memory_after_decode"] = peak_memory(device)
        log(f"  decode of {args.decode_tokens} tokens {sum(seconds):.2f} s")
        result["kv_cache_bytes_final"] = sum(k.nbytes + v.nbytes for k, v in past)
        result["linear_pass_s"] = linear_pass_s(model, device)
        log(f"  every LLM linear layer on one token, alone: {1e3 * result['linear_pass_s']:.1f} ms")
        if args.verify:
            result["same_tokens_as_generate"] = same_as_generate(model, inputs, tokens)
    result["decode_step_s"] = seconds
    result["tokens"] = tokens.tolist()
    return result


def summarise(r: dict) -> dict:
    """Decode speed against the bandwidth bound, and the peak memory the targets judge."""
    steps = r["decode_step_s"]
    r["decode_tokens_per_s"] = len(steps) / sum(steps)
    r["decode_median_ms"] = 1e3 * statistics.median(steps)
    r["decode_tokens_per_s_median"] = 1e3 / r["decode_median_ms"]
    r["bound_tokens_per_s"] = r["copy_bandwidth_gbs"]["used"] * GB / r["weight_bytes"]["llm_read_per_token"]
    r["decode_fraction_of_bound"] = r["decode_tokens_per_s_median"] / r["bound_tokens_per_s"]
    # the ceiling torch's matrix-vector kernel sets: the linear layers alone, as a fraction of the bound
    r["linear_only_fraction_of_bound"] = 1 / r["linear_pass_s"] / r["bound_tokens_per_s"]
    average_kv = (r["sequence"] + len(steps) / 2) / (r["sequence"] + len(steps)) * r["kv_cache_bytes_final"]
    r["kv_bytes_read_per_token_avg"] = average_kv
    r["prefill_tokens_per_s"] = r["sequence"] / r["prefill_s"]
    peak = r["memory_after_decode"]  # the whole run of the model (a --verify rerun comes after)
    r["peak_gb"] = peak["cuda_peak_allocated_gb"] if r["device"] == "cuda" else peak["peak_rss_gb"]
    return r


def run_child(preset: str, args) -> dict:
    """Measure ``preset`` in a fresh Python (progress shows live on stderr); its JSON is the last stdout line."""
    command = [sys.executable, __file__, "--child", preset, "--dtype", args.dtype, "--device", args.device,
               "--decode-tokens", str(args.decode_tokens), "--prompt-tokens", str(args.prompt_tokens),
               "--copy-mb", str(args.copy_mb)] + (["--threads", str(args.threads)] if args.threads else []) \
        + (["--verify"] if args.verify else [])
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode == REFUSED:
        return {"preset": preset, "refused": True}
    if done.returncode != 0:  # e.g. -9: killed for memory; the other presets still run
        log(f"the {preset} run failed (status {done.returncode}); its messages are above")
        return {"preset": preset, "failed": done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ============================================================================ targets, table, report
def judge(r: dict) -> list[dict]:
    """The issue's targets that apply to this result (dsvl-7b memory, dsvl-1.3b bound fraction, both bf16)."""
    if r.get("refused") or "failed" in r:
        return [{"preset": r["preset"], "check": "run", "value": None, "target": "completes", "passed": False}]
    if r["dtype"] != "bf16":
        return []
    if r["preset"] == "dsvl-7b":
        return [{"preset": "dsvl-7b", "check": "peak memory GB", "value": r["peak_gb"],
                 "target": f"<= {MEMORY_LIMIT_GB:.0f}", "passed": r["peak_gb"] <= MEMORY_LIMIT_GB}]
    if r["preset"] == "dsvl-1.3b":
        return [{"preset": "dsvl-1.3b", "check": "decode / bandwidth bound", "value": r["decode_fraction_of_bound"],
                 "target": f">= {BOUND_FRACTION_TARGET:.2f}",
                 "passed": r["decode_fraction_of_bound"] >= BOUND_FRACTION_TARGET}]
    return []


def print_table(results: list[dict]) -> None:
    headers = ["preset", "params", "encode s", "prefill s", "decode tok/s", "ms/token", "bound tok/s",
               "of bound", "copy GB/s", "peak GB"]
    rows = []
    for r in results:
        if r.get("refused") or "failed" in r:
            why = "refused: not enough memory" if r.get("refused") else f"failed (status {r['failed']})"
            rows.append([r["preset"], why] + [""] * (len(headers) - 2))
            continue
        rows.append([r["preset"], f"{r['parameters'] / 1e6:,.1f}M", f"{r['encode_s']:.2f}", f"{r['prefill_s']:.2f}",
                     f"{r['decode_tokens_per_s']:.2f}", f"{r['decode_median_ms']:.1f}",
                     f"{r['bound_tokens_per_s']:.2f}", f"{r['decode_fraction_of_bound']:.2f}",
                     f"{r['copy_bandwidth_gbs']['used']:.1f}", f"{r['peak_gb']:.2f}"])
    widths = [max(len(c) for c in column) for column in zip(headers, *rows)]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for r in results:
        if "gemv_4096" in r:
            gemv = r["gemv_4096"]
            print(f"{r['preset']}: gemv 4096x4096 bf16 {gemv['bf16']['ms']:.2f} ms ({gemv['bf16']['weight_gbs']:.1f} "
                  f"GB/s of weights), fp32 {gemv['fp32']['ms']:.2f} ms ({gemv['fp32']['weight_gbs']:.1f} GB/s); "
                  f"weights read per token {r['weight_bytes']['llm_read_per_token'] / GB:.3f} GB, KV cache "
                  f"{r['kv_bytes_read_per_token_avg'] / GB:.3f} GB; tokens/s from the median step "
                  f"{r['decode_tokens_per_s_median']:.2f}; the LLM's linear layers alone "
                  f"{1e3 * r['linear_pass_s']:.1f} ms a token = {r['linear_only_fraction_of_bound']:.2f} of the bound")


def print_verdicts(verdicts: list[dict]) -> None:
    if not verdicts:
        print("no target applies to these presets / this dtype (the targets are for dsvl-1.3b and dsvl-7b in bf16)")
    for v in verdicts:
        value = "-" if v["value"] is None else f"{v['value']:.2f}"
        print(f"{v['preset']}: {v['check']} {value} (target {v['target']}): {'PASS' if v['passed'] else 'FAIL'}")


def one_line(results: list[dict], verdicts: list[dict], path: Path) -> dict:
    """The JSON line: the headline figures per preset and the verdicts."""
    keys = ("encode_s", "prefill_s", "decode_tokens_per_s", "decode_median_ms", "bound_tokens_per_s",
            "decode_fraction_of_bound", "linear_only_fraction_of_bound", "peak_gb", "refused", "failed")
    per_preset = {r["preset"]: {k: r[k] for k in keys if k in r} for r in results}
    return {"benchmark": "inference", "results": per_preset, "passed": all(v["passed"] for v in verdicts),
            "file": str(path)}


# ============================================================================ main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", default=None,
                        help=f"repeatable (default {', '.join(PRESETS)}; with --quick {', '.join(QUICK_PRESETS)})")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                        help="weights and activations (default bf16)")
    parser.add_argument("--decode-tokens", type=int, default=None,
                        help="new tokens to decode (default 32, 4 with --quick)")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="text tokens after the image (default 64)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="default cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, i.e. all cores)")
    parser.add_argument("--copy-mb", type=int, default=None,
                        help="size of the bandwidth copy in MiB (default 1024, 256 with --quick)")
    parser.add_argument("--verify", action="store_true",
                        help="check the decoded tokens against DSVLModel.generate (one more full run; on with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: miniature presets, a few tokens")
    parser.add_argument("--name", default=None, help="results file (default inference[-<device>][-fp32][-quick])")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.preset = args.preset or (QUICK_PRESETS if args.quick else PRESETS)
    args.decode_tokens = args.decode_tokens or (4 if args.quick else 32)
    args.copy_mb = args.copy_mb or (256 if args.quick else 1024)
    args.verify = args.verify or args.quick
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    suffix = ("-cuda" if args.device == "cuda" else "") + ("-fp32" if args.dtype == "fp32" else "")
    args.name = args.name or "inference" + suffix + ("-quick" if args.quick else "")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    log(f"inference: {', '.join(args.preset)} in {args.dtype} on {args.device}, one image + {args.prompt_tokens} "
        f"prompt tokens, {args.decode_tokens} decoded tokens, each preset in its own process")
    results = [run_child(preset, args) for preset in args.preset]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_model import machine  # the same machine record as the other benchmarks (not in the children)

    verdicts = [v for r in results for v in judge(r)]
    print()
    print_table(results)
    print_verdicts(verdicts)
    report = {"benchmark": "inference", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine(), "threads_env": os.environ.get("OMP_NUM_THREADS"), "args": vars(args),
              "results": results, "verdicts": verdicts}
    path = write_json_atomic(RESULTS / f"{args.name}.json", report)
    print(json.dumps(one_line(results, verdicts, path)))
    return 0 if all(v["passed"] for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
