"""Attention capture: what it costs when off, and what one layer costs at real size.

(a) Speed, as ratios measured in the same run, inference forwards of one trace-sized sample. The
    machine is shared, so the two sides are timed one call each, back to back, many times over
    (alternating which goes first), and the ratio is the median of the per-pair ratios: a busy
    moment slows both calls of a pair and cancels out of its ratio.
    - a model after an ``AttentionCapture`` was entered and left / a model never captured:
      capture switched off leaves the speed unchanged.                          target 0.90 .. 1.10
    - inside an ``AttentionCapture`` that records no layer / never captured: the hooks alone
      cost nothing.                                                             target 0.90 .. 1.10
    - one LLM layer captured / never captured, and every layer / never (informational).
(b) Real size: ``dsvl-1.3b`` (random weights, bf16, CPU), one image (576 image tokens) and a
    short prompt, capturing one LLM layer: wall time and peak resident memory (VmHWM) of a fresh
    process that builds the model and runs the capture.                           target <= 24 GB

Results print as a table and are written atomically to ``benchmarks/results/<name>.json``; the
exit status is 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import machine, print_table  # noqa: E402  (the same machine record and table)

from dsvl_lab.atomic import write_json_atomic  # noqa: E402
from dsvl_lab.config import DSVLConfig  # noqa: E402
from dsvl_lab.inspection import AttentionCapture  # noqa: E402
from dsvl_lab.model import DSVLModel  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLE = """Examples:
  python benchmarks/bench_attention.py                 # about 2 minutes, most of it building the 1.3B model
  python benchmarks/bench_attention.py --quick         # short timing
  python benchmarks/bench_attention.py --skip-real-size
"""
REAL_SIZE_LIMIT_GB = 24.0


def one_sample(config: DSVLConfig, text_tokens: int, dtype=torch.float32) -> dict:
    """BOS, one image's placeholder tokens, then random text: the shape of a trace."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, min(config.llm.vocab_size, 4000), (1, 1 + config.num_image_tokens + text_tokens),
                        generator=generator)
    ids[0, 0] = config.bos_token_id
    ids[0, 1:1 + config.num_image_tokens] = config.image_token_id
    pixels = torch.rand(1, 3, config.image_size, config.image_size, generator=generator).to(dtype)
    return {"input_ids": ids, "pixel_values": pixels}


def forward(model, inputs: dict, capture: dict | None = None):
    """One inference forward, optionally inside an AttentionCapture(**capture)."""

    def step() -> None:
        with torch.no_grad():
            if capture is None:
                model(**inputs)
            else:
                with AttentionCapture(model, **capture):
                    model(**inputs)

    return step


# ============================================================================ (a) speed ratios
def paired_ratio(label: str, subject, reference, subject_name: str, reference_name: str, pairs: int,
                 target: tuple[float, float] | None) -> dict:
    """Median over ``pairs`` of (subject call time / reference call time), the two calls back to back."""
    for _ in range(3):  # warm-up: allocator, first-call costs
        subject(), reference()
    ratios, times = [], {"subject": [], "reference": []}
    for index in range(pairs):
        pair = {}
        for side in (("subject", "reference") if index % 2 == 0 else ("reference", "subject")):
            started = time.perf_counter()
            (subject if side == "subject" else reference)()
            pair[side] = time.perf_counter() - started
            times[side].append(pair[side])
        ratios.append(pair["subject"] / pair["reference"])
    ratio = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    passed = None if target is None else target[0] <= ratio <= target[1]
    print(f"  {label}: {ratio:.3f} (pair ratios, quartiles {quartiles[0]:.3f} .. {quartiles[2]:.3f})", flush=True)
    return {"check": label, "subject": subject_name, "reference": reference_name,
            "subject_ms": 1e3 * statistics.median(times["subject"]),
            "reference_ms": 1e3 * statistics.median(times["reference"]), "ratio": ratio,
            "pair_ratio_quartiles": [quartiles[0], quartiles[2]], "pairs": pairs,
            "target": None if target is None else {"min": target[0], "max": target[1]}, "passed": passed}


def check_speed(preset: str, text_tokens: int, pairs: int) -> list[dict]:
    config = DSVLConfig.from_name(preset)
    never = DSVLModel(config).eval()
    captured = copy.deepcopy(never)  # same weights, same arithmetic
    inputs = one_sample(config, text_tokens)
    with torch.no_grad(), AttentionCapture(captured):  # every layer on, then off again on leaving
        captured(**inputs)
    reference = forward(never, inputs)
    return [
        paired_ratio("(a) after a capture, off / never captured", forward(captured, inputs), reference,
                     "model after AttentionCapture (all layers) was left", "fresh model", pairs, (0.9, 1.1)),
        paired_ratio("(a) capture of no layer / never captured", forward(never, inputs, {"components": ()}),
                     reference, "inside AttentionCapture(components=())", "fresh model", pairs, (0.9, 1.1)),
        paired_ratio("(a) one LLM layer captured / never",
                     forward(never, inputs, {"components": ("llm",), "layers": [-1]}), reference,
                     "AttentionCapture(llm, layers=[-1])", "fresh model", pairs, None),
        paired_ratio("(a) every layer captured / never", forward(never, inputs, {}), reference,
                     "AttentionCapture() (all components, layers, heads)", "fresh model", pairs, None),
    ]


# ============================================================================ (b) real size, in a fresh process
def peak_rss_gb() -> float:
    """VmHWM: the most resident memory this process has used so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # kB -> GB (GiB)
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def real_size_child(preset: str, text_tokens: int) -> dict:
    """Build ``preset`` in bf16 with random weights and capture its first LLM layer once."""
    torch.manual_seed(0)
    started = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)  # allocate the weights in bf16 directly (no fp32 copy)
    try:
        model = DSVLModel.from_name(preset).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    build_s, model_rss = time.perf_counter() - started, peak_rss_gb()
    inputs = one_sample(model.config, text_tokens, torch.bfloat16)
    started = time.perf_counter()
    with torch.no_grad():
        model(**inputs)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    with torch.no_grad(), AttentionCapture(model, components=("llm",), layers=[0]) as capture:
        model(**inputs)
    capture_s = time.perf_counter() - started
    weights = capture.attentions["llm.0"]
    return {"preset": preset, "dtype": "bfloat16", "parameters": model.num_params(),
            "sequence": inputs["input_ids"].shape[1], "image_tokens": model.config.num_image_tokens,
            "captured": {"llm.0": list(weights.shape)}, "kept_mb": capture.kept_bytes / 1e6,
            "rows_sum_max_error": float((weights.float().sum(-1) - 1).abs().max()),
            "build_s": build_s, "forward_s": plain_s, "capture_forward_s": capture_s,
            "rss_after_build_gb": model_rss, "peak_rss_gb": peak_rss_gb()}


def check_real_size(preset: str, text_tokens: int) -> dict:
    """Run :func:`real_size_child` in a fresh Python, so its peak memory is its own."""
    command = [sys.executable, __file__, "--child", preset, "--text-tokens", str(text_tokens)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the real-size run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["passed"] = result["peak_rss_gb"] <= REAL_SIZE_LIMIT_GB
    print(f"  (b) {preset} bf16, one LLM layer captured, {result['sequence']} tokens: capture forward "
          f"{result['capture_forward_s']:.1f} s (plain forward {result['forward_s']:.1f} s), peak RSS "
          f"{result['peak_rss_gb']:.2f} GB (after building {result['rss_after_build_gb']:.2f} GB), "
          f"limit {REAL_SIZE_LIMIT_GB:.0f} GB: {'PASS' if result['passed'] else 'FAIL'}", flush=True)
    return result


# ============================================================================ main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dsvl-tiny-hybrid", help="model of the speed ratios (default %(default)s)")
    parser.add_argument("--real-size", default="dsvl-1.3b", help="model of the memory check (default %(default)s)")
    parser.add_argument("--text-tokens", type=int, default=24, help="prompt tokens besides the image (default 24)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="A/B call pairs per check (default 200, 30 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short timing")
    parser.add_argument("--skip-real-size", action="store_true", help="only the speed ratios")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--name", default=None, help="results file (default bench_attention[-quick])")
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (30 if args.quick else 200)
    args.name = args.name or "bench_attention" + ("-quick" if args.quick else "")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(real_size_child(args.child, args.text_tokens)))
        return 0
    print(f"{args.preset}: one sample of {DSVLConfig.from_name(args.preset).num_image_tokens} image + "
          f"{args.text_tokens + 1} text tokens, inference, {torch.get_num_threads()} threads", flush=True)
    results = check_speed(args.preset, args.text_tokens, args.pairs)
    real = None if args.skip_real_size else check_real_size(args.real_size, args.text_tokens)
    print()
    print_table(results)
    report = {"benchmark": "bench_attention", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine(), "preset": args.preset, "text_tokens": args.text_tokens, "pairs": args.pairs,
              "results": results, "real_size": real}
    path = write_json_atomic(RESULTS / f"{args.name}.json", report)
    print(f"\nwrote {path}")
    failed = ([r["check"] for r in results if r["passed"] is False]
              + (["(b) real size"] if real and not real["passed"] else []))
    if failed:
        print(f"FAILED targets: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
