"""Training-step speed of DSVLModel, as ratios against references measured in the same run.

The machines we run on are shared and noisy, so no target here is an absolute time. Each check
times two training steps (forward + backward) on the same batch, back to back in several rounds,
and reports the median over rounds of each round's time ratio (a slow moment hits both sides):

  (a) ours / transformers: our model vs transformers' DeepseekVL[Hybrid]ForConditionalGeneration
      with the same weights and inputs (``convert.to_hf`` / ``convert.from_hf``).     target <= 1.25
  (b) attention recording on in ALL layers / off (informational: the price of inspection), and
      recording switched on then off again / a fresh model never switched.      target 0.90 .. 1.10
  (c) bf16 autocast / fp32 (informational: what CPU bf16 buys).

Results print as a table and are written (atomically) to ``benchmarks/results/<name>.json``.
The exit status is 1 when a target ratio is missed.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from torch.utils.benchmark import Timer

from dsvl_lab.config import DSVLConfig
from dsvl_lab.convert import from_hf, to_hf
from dsvl_lab.model import DSVLModel
from dsvl_lab.atomic import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLE = """Examples:
  python benchmarks/bench_model.py                       # dsvl-tiny-hybrid, batch 8, about 1-2 minutes
  python benchmarks/bench_model.py --quick               # a smoke run in about 20 seconds
  python benchmarks/bench_model.py --preset dsvl-small-siglip --batch 4 --name small-siglip
"""


# ============================================================================ inputs
def make_batch(config: DSVLConfig, batch: int, seq_len: int, transformers_views: bool) -> dict:
    """One image per sample: BOS, the image's placeholder tokens, then random text.

    Preset models (``transformers_views=False``) take raw [0, 1] images at ``config.image_size``
    and derive the low-res view themselves. transformers' model, and ours built by ``from_hf``,
    take the two views separately; they do not normalise, so random normal tensors will do.
    """
    n_image = config.num_image_tokens
    if seq_len < n_image + 2:
        raise SystemExit(f"--seq {seq_len} is too short for {n_image} image tokens; use at least {n_image + 2}")
    input_ids = torch.randint(4, config.llm.vocab_size, (batch, seq_len))
    input_ids[:, 0] = config.bos_token_id
    input_ids[:, 1:1 + n_image] = config.image_token_id
    labels = input_ids.masked_fill(input_ids == config.image_token_id, -100)  # no loss on image positions
    inputs = {"input_ids": input_ids, "labels": labels}
    if not transformers_views:
        inputs["pixel_values"] = torch.rand(batch, 3, config.image_size, config.image_size)
        return inputs
    low = config.siglip.image_size
    inputs["pixel_values"] = torch.randn(batch, 3, low, low)
    if config.sam is not None:
        high = config.sam.image_size
        inputs["high_res_pixel_values"] = torch.randn(batch, 3, high, high)
    return inputs


def training_step(model: torch.nn.Module, inputs: dict, bf16: bool = False) -> Callable[[], None]:
    """A closure running forward + backward once (gradients reset, as an optimizer step would)."""
    model.train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = model(**inputs).loss
        loss.backward()

    step()  # warm-up, and proof that the step runs before we time it
    return step


# ============================================================================ timing
def block_times(step: Callable[[], None], min_run_time: float) -> list[float]:
    """Per-call seconds of each block that ``blocked_autorange`` measured."""
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return list(timer.blocked_autorange(min_run_time=min_run_time).times)


class WallClock(L.Callback):
    """Wall clock at a fit's first training batch (the end of start-up) and at the fit's end (after
    the stage's evaluation): what the stage benchmarks time a real stage by."""

    first: float | None = None
    end: float | None = None

    def on_train_batch_start(self, *args) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def on_fit_end(self, *args) -> None:
        self.end = time.perf_counter()


def warm_sample_cache(preset: str, spec, eval_samples: int, choice: str = "auto") -> Path | None:
    """The sample cache a stage benchmark reads, as ``make demo`` does (``runs/sample-cache`` by default,
    ``off`` for none), with everything the stage and its evaluation draw rendered into it first:
    pre-rendering is the pipeline's work before stage 1, not the stage's. (``off`` imports nothing new,
    so the benchmark also runs on commits that predate the cache.)"""
    if choice == "off":
        return None
    from dsvl_lab.data.sample_cache import CACHE_FOLDER, build, open_cache, resolve_root
    from dsvl_lab.training.run import pipeline_sample_keys

    root = resolve_root(choice, Path("runs") / CACHE_FOLDER)
    if root is not None:  # what a pipeline of this one stage pre-renders: its batches and evaluation sets
        keys = pipeline_sample_keys(preset, eval_samples=eval_samples, stages=[spec])
        build(open_cache(str(root)), keys, workers=os.cpu_count() or 1)
    return root


def compare(label: str, subject: Callable, reference: Callable, subject_name: str, reference_name: str,
            rounds: int, min_run_time: float, target: tuple[float | None, float | None] | None) -> dict:
    """How much slower ``subject`` is than ``reference``: the median of per-round ratios.

    Each round times both sides back to back (A B, then B A in the next round, so neither always
    goes first); a slow moment of the machine then inflates both sides of that round's ratio,
    which cancels, where it would shift a ratio of two separately measured medians.
    """
    ratios, times = [], {"subject": [], "reference": []}
    for round_index in range(rounds):
        order = ("subject", "reference") if round_index % 2 == 0 else ("reference", "subject")
        this_round = {}
        for side in order:
            this_round[side] = block_times(subject if side == "subject" else reference, min_run_time)
            times[side] += this_round[side]
        ratios.append(statistics.median(this_round["subject"]) / statistics.median(this_round["reference"]))
    ratio = statistics.median(ratios)
    low, high = target if target else (None, None)
    passed = None if target is None else (low is None or ratio >= low) and (high is None or ratio <= high)
    print(f"  {label}: {ratio:.3f} (rounds {min(ratios):.3f} .. {max(ratios):.3f})", flush=True)
    return {"check": label, "subject": subject_name, "reference": reference_name,
            "subject_ms": 1e3 * statistics.median(times["subject"]),
            "reference_ms": 1e3 * statistics.median(times["reference"]),
            "ratio": ratio, "round_ratios": ratios,
            "target": None if target is None else {"min": low, "max": high}, "passed": passed}


# ============================================================================ the checks
def check_transformers(config: DSVLConfig, batch: int, seq_len: int, timing: dict) -> list[dict]:
    """(a) ours vs transformers, same weights, same inputs, same loss."""
    if config.encoder == "sam":
        print("  (a) skipped: transformers has no SAM-only DeepSeek-VL", flush=True)
        return []
    hf_model = to_hf(DSVLModel(config))
    ours = from_hf(hf_model)  # takes exactly the transformers inputs
    inputs = make_batch(ours.config, batch, seq_len, transformers_views=True)
    ours.eval()
    hf_model.eval()
    with torch.no_grad():  # the same computation, or the ratio means nothing
        gap = (ours(**inputs).loss - hf_model(**inputs).loss).abs().item()
    if gap > 1e-4:
        raise SystemExit(f"ours and transformers disagree (loss gap {gap:.2e}); fix parity before timing")
    return [compare("(a) ours / transformers, fwd+bwd", training_step(ours, inputs),
                    training_step(hf_model, inputs), "DSVLModel (from_hf)",
                    type(hf_model).__name__, target=(None, 1.25), **timing)]


def check_recording_and_bf16(config: DSVLConfig, batch: int, seq_len: int, timing: dict) -> list[dict]:
    """(b) attention recording on / off / never switched, and (c) bf16 autocast vs fp32."""
    fresh = DSVLModel(config)
    switched = copy.deepcopy(fresh)  # same weights, so the same arithmetic
    inputs = make_batch(config, batch, seq_len, transformers_views=False)
    fresh_step = training_step(fresh, inputs)
    switched.record_attention(on=True)  # every layer of SigLIP, SAM and the LLM
    recording_step = training_step(switched, inputs)
    results = [compare("(b) recording all layers / off, fwd+bwd", recording_step, fresh_step,
                       f"record_attention(on=True), {len(switched.attention_layers())} layers",
                       "fresh model", target=None, **timing)]
    switched.record_attention(on=False)
    results.append(compare("(b) recording switched off / never on", training_step(switched, inputs), fresh_step,
                           "record_attention(on=True) then (on=False)", "fresh model",
                           target=(0.9, 1.1), **timing))
    results.append(compare("(c) bf16 autocast / fp32, fwd+bwd", training_step(fresh, inputs, bf16=True),
                           fresh_step, "torch.autocast(cpu, bfloat16)", "fp32", target=None, **timing))
    return results


# ============================================================================ reporting
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import transformers

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "bf16_instructions": cpu_bf16_flags(),  # the same model name has come with and without them
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def cpu_bf16_flags() -> list[str]:
    """The CPU's bf16 and AVX-512 flags (``avx512_bf16``, ``amx_bf16``, ``avx512f``...): [] on an AVX2-only CPU,
    where bf16 matrix products convert every element and run slower than fp32."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(flag for flag in flags if "bf16" in flag or flag in ("avx512f", "amx_tile"))


def print_table(results: list[dict]) -> None:
    headers = ["check", "subject ms", "reference ms", "ratio", "target", "ok"]
    rows = []
    for r in results:
        target = r["target"]
        bounds = "-" if target is None else (
            f"<= {target['max']:.2f}" if target["min"] is None else f"{target['min']:.2f} .. {target['max']:.2f}")
        ok = "info" if r["passed"] is None else ("PASS" if r["passed"] else "FAIL")
        rows.append([r["check"], f"{r['subject_ms']:.1f}", f"{r['reference_ms']:.1f}", f"{r['ratio']:.3f}", bounds, ok])
    widths = [max(len(c) for c in column) for column in zip(headers, *rows)]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


# ============================================================================ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dsvl-tiny-hybrid", help="model preset (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=None, help="samples per step (default: 8, or 2 with --quick)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sample, image tokens included (default: 128)")
    parser.add_argument("--rounds", type=int, default=None, help="A/B rounds per check (default: 7, or 3 with --quick)")
    parser.add_argument("--min-run-time", type=float, default=None,
                        help="seconds per side per round (default: 0.5, or 0.1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small batch, short timing: a smoke run")
    parser.add_argument("--name", default=None, help="results file name (default: bench_model-<preset>[-quick])")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.batch = args.batch or (2 if args.quick else 8)
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.min_run_time = args.min_run_time or (0.1 if args.quick else 0.5)
    args.name = args.name or f"bench_model-{args.preset}" + ("-quick" if args.quick else "")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    config = DSVLConfig.from_name(args.preset)
    timing = {"rounds": args.rounds, "min_run_time": args.min_run_time}
    print(f"{args.preset}: batch {args.batch} x {args.seq} tokens, {torch.get_num_threads()} threads", flush=True)
    results = check_transformers(config, args.batch, args.seq, timing)
    results += check_recording_and_bf16(config, args.batch, args.seq, timing)
    print()
    print_table(results)
    report = {"benchmark": "bench_model", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine(), "preset": args.preset, "batch": args.batch, "seq_len": args.seq,
              "rounds": args.rounds, "min_run_time_s": args.min_run_time, "quick": args.quick, "results": results}
    path = RESULTS / f"{args.name}.json"
    write_json_atomic(path, report)
    print(f"\nwrote {path}")
    failed = [r["check"] for r in results if r["passed"] is False]
    if failed:
        print(f"FAILED targets: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
