"""Tables and pictures of what scale costs, for notebook 09: FLOPs, memory and tokens per stage of the
released layouts, what fits on one GPU, and the accounting checked against a measurement.

Everything here reads the analytic accounting (``dsvl_lab.metrics.flops`` and ``.memory``, formulas in
their docstrings); ``miniature_check`` measures the same quantities on a real miniature step
(``cost_check``) so a reader can see the formulas hold before trusting them at 7B.
"""
from __future__ import annotations

from ..config import DSVLConfig
from ..metrics.flops import PAPER_CLUSTERS, implied_mfu, paper_run, step_flops, trainable_groups
from ..metrics.memory import GiB, parameter_table, stage_memory
from ..training import STAGE_NAMES, stage_spec
from ..training.callbacks import batch_flops
from ..training.step import prepared_stage, training_step_by_hand
from .cost_check import analytic_step, counted_step, measured_peak_bytes, meta_model
from .model_tables import print_table

RELEASED = ("dsvl-1.3b", "dsvl-7b")
GPU_GB = (24, 80)  # a 24 GB card (RTX 4090 / A10 class) and an 80 GB A100 / H100 (GiB both: 24,576 / 81,920 MiB)


def stage_costs(presets=RELEASED, batch: int = 1, seq: int = 4096, precision: str = "bf16-mixed") -> list[dict]:
    """Per preset and stage: parameters that train, tokens, FLOPs of one step and its memory peak on one device."""
    rows = []
    for preset in presets:
        config = DSVLConfig.from_name(preset)
        table = parameter_table(config)
        for stage in STAGE_NAMES:
            trains = trainable_groups(stage)
            memory = stage_memory(config, stage, batch, seq, precision)
            rows.append({"preset": preset, "stage": stage,
                         "trainable_params": sum(n for group, n in table.total.items() if group in trains),
                         "params": sum(table.total.values()), "tokens": batch * seq,
                         "image_tokens": batch * config.num_image_tokens,
                         "step_flops": step_flops(config, stage, batch, seq)["total"],
                         "memory_gb": memory.peak / GiB, "activations_gb": memory.activations / GiB})
    return rows


def print_stage_costs(rows: list[dict]) -> None:
    print_table(["model", "stage", "trains", "of", "tokens (image)", "TFLOP / step", "peak GiB", "activations GiB"],
                [[r["preset"], r["stage"], f"{r['trainable_params'] / 1e9:.2f}B", f"{r['params'] / 1e9:.2f}B",
                  f"{r['tokens']:,} ({r['image_tokens']:,})", f"{r['step_flops'] / 1e12:,.1f}",
                  f"{r['memory_gb']:.1f}", f"{r['activations_gb']:.1f}"] for r in rows], right=set(range(2, 8)))


def fit_grid(presets=RELEASED, stages=("stage2_joint", "stage3_sft"), batch: int = 1, seq: int = 4096,
             fsdp_sizes=(1, 8), precision: str = "bf16-mixed") -> list[dict]:
    """The memory peak per device with and without activation checkpointing and FSDP, and which GPUs it fits
    (before the CUDA context and the allocator's fragmentation, about 1-2 GiB more in practice)."""
    rows = []
    for preset in presets:
        config = DSVLConfig.from_name(preset)
        for stage in stages:
            for fsdp in fsdp_sizes:
                for checkpointing in (False, True):
                    peak = stage_memory(config, stage, batch, seq, precision, checkpointing, fsdp).peak / GiB
                    rows.append({"preset": preset, "stage": stage, "fsdp": fsdp, "checkpointing": checkpointing,
                                 "peak_gb": peak, **{f"fits_{gb}": peak <= gb for gb in GPU_GB}})
    return rows


def setup_label(row: dict) -> str:
    return (f"{row['preset'].removeprefix('dsvl-')} {row['stage'].split('_')[0]}, "
            f"{'FSDP x' + str(row['fsdp']) if row['fsdp'] > 1 else 'one GPU'}"
            f"{', ckpt' if row['checkpointing'] else ''}")


def print_fit_grid(rows: list[dict]) -> None:
    print_table(["setup", "peak GiB per GPU", *(f"fits {gb} GB" for gb in GPU_GB)],
                [[setup_label(r), f"{r['peak_gb']:.1f}", *("yes" if r[f"fits_{gb}"] else "no" for gb in GPU_GB)]
                 for r in rows], right={1})


def plot_fit_grid(rows: list[dict]):
    """Horizontal bars of the peak per device, with the 24 GB and 80 GB lines."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    labels = [setup_label(r) for r in rows]
    colours = ["tab:green" if r[f"fits_{GPU_GB[0]}"] else "tab:orange" if r[f"fits_{GPU_GB[-1]}"] else "tab:red"
               for r in rows]
    axis.barh(range(len(rows)), [r["peak_gb"] for r in rows], color=colours)
    for gb in GPU_GB:
        axis.axvline(gb, color="black", linestyle="--", linewidth=1)
        axis.text(gb, -0.9, f"{gb} GB", ha="center", fontsize=8)
    axis.set_yticks(range(len(rows)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("peak memory per GPU, GiB (log scale; batch 1 x 4096 tokens, bf16-mixed AdamW)")
    axis.set_title("What fits: green on 24 GB, orange on 80 GB, red on neither")
    figure.tight_layout()
    return figure


def miniature_check(preset: str = "dsvl-tiny-hybrid", batch: int = 4, seq: int | None = None,
                    precision: str = "fp32", stages=STAGE_NAMES) -> list[dict]:
    """The accounting against measurement on a real miniature: analytic FLOPs against FlopCounterMode
    (on the meta device), analytic memory peak against the peak of live tensor bytes of a real step."""
    config = DSVLConfig.from_name(preset)
    seq = seq or config.num_image_tokens + 64
    model = meta_model(preset)
    rows = []
    for stage in stages:
        counted, analytic = counted_step(model, stage, batch, seq), analytic_step(config, stage, batch, seq)
        measured = measured_peak_bytes(preset, stage, batch, seq, precision)
        estimate = stage_memory(config, stage, batch, seq, precision).peak
        rows.append({"stage": stage, "flops_analytic": sum(analytic), "flops_counted": sum(counted),
                     "memory_analytic_mib": estimate / 2**20, "memory_measured_mib": measured / 2**20})
    return rows


def print_miniature_check(rows: list[dict]) -> None:
    print_table(["stage", "GFLOP analytic", "GFLOP counted", "off by", "MiB analytic", "MiB measured", "off by"],
                [[r["stage"], f"{r['flops_analytic'] / 1e9:.3f}", f"{r['flops_counted'] / 1e9:.3f}",
                  f"{r['flops_analytic'] / r['flops_counted'] - 1:+.1%}", f"{r['memory_analytic_mib']:.1f}",
                  f"{r['memory_measured_mib']:.1f}", f"{r['memory_analytic_mib'] / r['memory_measured_mib'] - 1:+.1%}"]
                 for r in rows], right=set(range(1, 7)))


def step_time_against_flops(presets=("dsvl-tiny-hybrid", "dsvl-small-hybrid"), stage: str = "stage3_sft",
                            steps: int = 6, precision: str = "32-true") -> list[dict]:
    """Seconds of a real training step (forward, backward, AdamW) against its analytic FLOPs, per preset:
    does time grow with the FLOPs from one size to the next? (The first step, a warm-up, is not timed.)"""
    import statistics
    import time

    rows = []
    for preset in presets:
        spec = stage_spec(stage).replace(starts_from="random", steps=steps)  # the same FLOPs as from the parts
        model, batches, optimizer, scheduler = prepared_stage(preset, spec)
        ready = [batches[step] for step in range(steps)]
        seconds = []
        for batch in ready:
            start = time.perf_counter()
            training_step_by_hand(model, batch, optimizer, scheduler, spec.grad_clip, precision)
            seconds.append(time.perf_counter() - start)
        flops = statistics.mean(batch_flops(model.config, spec, b) for b in ready[1:])
        rows.append({"preset": preset, "stage": stage, "flops_per_step": flops,
                     "seconds_per_step": statistics.median(seconds[1:]),
                     "gflops_per_s": flops / statistics.median(seconds[1:]) / 1e9})
    return rows


def print_step_times(rows: list[dict]) -> None:
    first = rows[0]
    print_table(["preset", "GFLOP / step", "s / step", "GFLOP/s", "FLOPs x", "time x"],
                [[r["preset"], f"{r['flops_per_step'] / 1e9:.2f}", f"{r['seconds_per_step']:.3f}",
                  f"{r['gflops_per_s']:.1f}", f"{r['flops_per_step'] / first['flops_per_step']:.2f}",
                  f"{r['seconds_per_step'] / first['seconds_per_step']:.2f}"] for r in rows], right=set(range(1, 6)))


def print_paper_runs(mfu: float, peak: float, images: int) -> None:
    """Table 4's runs of 7B and 1.3B: FLOPs per stage and in all, in GPU-days at ``mfu``, next to the paper's."""
    print(f"The paper's runs (Table 4 steps x batch x sequence, {images} image(s) per sequence), at MFU "
          f"{mfu:.0%} of {peak / 1e12:,.0f} TFLOP/s per GPU:")
    cells = []
    notes = []
    for preset, cluster in PAPER_CLUSTERS.items():
        runs = paper_run(preset, images_per_sample=images)
        everything = sum(run.flops for run in runs)
        for run in runs:
            cells.append([preset, run.stage, f"{run.steps:,}", f"{run.batch:,}", f"{run.seq:,}", f"{run.flops:.3e}",
                          f"{run.gpu_days(mfu, peak):,.0f}"])
        cells.append([preset, "all three", "", "", "", f"{everything:.3e}",
                      f"{everything / (peak * mfu * 86_400):,.0f}"])
        stage2 = next(run for run in runs if run.stage == "stage2_joint")
        notes.append(f"{preset}: paper {cluster.nodes} nodes x {cluster.gpus_per_node} A100 x {cluster.days:g} days "
                     f"= {cluster.gpu_days:,.0f} A100-days; the FLOPs above fill them at MFU "
                     f"{implied_mfu(stage2.flops, cluster.gpu_days, peak):.1%} (stage 2 alone) or "
                     f"{implied_mfu(everything, cluster.gpu_days, peak):.1%} (all three stages)")
    headers = ["model", "stage", "steps", "batch", "seq", "FLOPs", f"GPU-days @{mfu:.0%}"]
    print_table(headers, cells, right=set(range(2, 7)))
    print()
    for note in notes:
        print(note)
    print("Stage 1's 512 tokens are read as text after the 576 image tokens; stage 2's text-only batches (70%)\n"
          "and packing are not modelled; attention counts the full T x T square (a causal kernel skips half).")
