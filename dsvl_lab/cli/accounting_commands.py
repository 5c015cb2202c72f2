"""Accounting: ``flops`` (analytic FLOPs per component and stage, and the paper's runs in A100-days)
and ``memory`` (weights, gradients, AdamW state and activations per stage), from
:mod:`dsvl_lab.metrics.flops` and :mod:`dsvl_lab.metrics.memory`. Nothing is trained or allocated.
"""
from __future__ import annotations

from .common import COUNT, EXIT_OK, arg, real_number, subcommand, whole_number

# Imports of torch, the model and the libraries sit inside the command functions: the one place in
# the package where lazy imports are justified, so that `dsvl-lab --help` answers at once.

SHAPE_ARGS = [
    arg("--preset", default="dsvl-7b", help="model preset (default dsvl-7b; see dsvl-lab presets)"),
    arg("--stage", default="stage2_joint",
        help="stage1_adaptor, stage2_joint or stage3_sft: decides what trains (default stage2_joint)"),
    arg("--batch", type=COUNT, default=1, help="sequences per step (per device for memory; default 1)"),
    arg("--seq", type=COUNT, default=4096, help="tokens per sequence, image tokens included (default 4096)"),
    arg("--images", type=whole_number(0), default=1,
        help="images per sequence, each g*g tokens inside --seq (default 1; 0 = a text-only batch)"),
    arg("--config", action="append", default=None, metavar="PIECE",
        help="cost what `dsvl-lab fit --config PIECE ...` would train (repeatable, merged in order): the "
             "preset and stage come from the pieces, and the sequence length (flops: also the batch) from "
             "the stage's data"),
]
UNITS = [(1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1, "FLOP")]


def flop_unit(largest: float) -> tuple[float, str]:
    """The largest unit in which ``largest`` is at least 1."""
    return next(((scale, name) for scale, name in UNITS if largest >= scale), UNITS[-1])


# ============================================================================ flops
@subcommand(
    "flops", "analytic FLOPs of one training step per component (forward, backward), aware of what a stage freezes",
    example="dsvl-lab flops --preset dsvl-7b --stage stage2_joint --batch 1 --seq 4096\n"
            "dsvl-lab flops --preset dsvl-tiny-hybrid --stage stage1_adaptor --batch 16 --seq 256\n"
            "dsvl-lab flops --paper-run --mfu 0.5          (the paper's 7B and 1.3B runs in A100-days)\n"
            "dsvl-lab flops --config configs/model/dsvl-7b.yaml --config configs/stage/stage2_joint-paper-7b.yaml \\\n"
            "    --config configs/data/own-stage2.yaml     (a dry run: what the fit pieces' whole run costs)",
    details="Matrix products only, 2*m*k*n each (as torch's FlopCounterMode counts them); attention over the\n"
            "full T x T square. Backward: an activation gradient wherever something trainable lies upstream,\n"
            "a weight gradient wherever the weight trains. Formulas: dsvl_lab/metrics/flops.py.",
    args=SHAPE_ARGS + [
        arg("--paper-run", action="store_true",
            help="also cost the paper's 7B and 1.3B runs (Table 4) in FLOPs and A100-days, next to the paper's"),
        arg("--mfu", type=real_number(0, 1, low_open=True), default=0.4,
            help="model FLOPs utilisation for A100-days (default 0.40)"),
        arg("--peak-tflops", type=real_number(0, low_open=True), default=312.0,
            help="GPU peak in TFLOP/s (default 312: A100 dense bf16)"),
    ],
)
def cmd_flops(args) -> int:
    from ..config import DSVLConfig
    from ..inspection.model_tables import print_table
    from ..metrics.flops import stage_flops
    if args.config:
        return dry_run(args)

    config = DSVLConfig.from_name(args.preset)
    rows = stage_flops(config, args.stage, args.batch, args.seq, args.images)
    total = sum(r.total for r in rows)
    scale, unit = flop_unit(total)
    cells = [[r.name, r.group, "trains" if r.trainable else "frozen", *(f"{v / scale:,.3f}" for v in
              (r.forward, r.backward_input, r.backward_weight, r.backward, r.total))] for r in rows]
    sums = [sum(getattr(r, k) for r in rows) for k in ("forward", "backward_input", "backward_weight", "backward")]
    cells.append(["total", "", "", *(f"{v / scale:,.3f}" for v in sums), f"{total / scale:,.3f}"])
    print(f"{args.preset}, {args.stage}: batch {args.batch} x {args.seq} tokens, {args.images} image(s) of "
          f"{config.num_image_tokens} tokens per sequence; {unit} per step")
    print_table(["component", "group", "state", "forward", "bwd dx", "bwd dW", "backward", "total"], cells,
                right=set(range(3, 8)))
    print(f"\nbackward / forward = {sums[3] / sums[0]:.2f}; bwd dx: activation gradients, bwd dW: weight gradients.")
    if args.paper_run:
        print()
        from ..inspection.scaling_views import print_paper_runs

        print_paper_runs(args.mfu, args.peak_tflops * 1e12, args.images)
    return EXIT_OK


def pieces_shape(args) -> tuple[str, object, int, int]:
    """(preset, stage spec, global batch, tokens per sequence) of the fit pieces in ``args.config``."""
    from ..config import DSVLConfig
    from ..training.spec import load_pieces
    preset, spec = load_pieces(args.config)
    preset = preset or args.preset
    seq = spec.data.seq_len
    tokens = args.images * DSVLConfig.from_name(preset).num_image_tokens
    if seq < tokens:  # as metrics.flops.paper_run: a sequence shorter than its image counts as the text
        seq += tokens
    return preset, spec, spec.data.batch_size, seq


def dry_run(args) -> int:
    """The whole run of the pieces: per-step FLOPs of image and text batches, mixed as its plan draws them."""
    from ..config import DSVLConfig
    from ..metrics.flops import A100_BF16_PEAK, SECONDS_PER_DAY, step_flops
    preset, spec, batch, seq = pieces_shape(args)
    config = DSVLConfig.from_name(preset)
    data = spec.data
    draws = spec.steps if data.group_by_modality else spec.steps * batch
    text_share = data.plan().expected_text(draws) / draws  # the warm-up included
    image_step = step_flops(config, spec, batch, seq, args.images)["total"]
    text_step = step_flops(config, spec, batch, seq, 0)["total"]
    total = spec.steps * (text_share * text_step + (1 - text_share) * image_step)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else A100_BF16_PEAK
    days = total / (peak * args.mfu * SECONDS_PER_DAY)
    print(f"{preset}, {spec.name} from {', '.join(args.config)}:")
    print(f"  {spec.steps:,} steps x {batch:,} sequences x {seq:,} tokens; language-only share "
          f"{text_share:.3f} (target {data.language_ratio}, warm-up {data.warmup_steps} steps)")
    print(f"  per step: {image_step:.3e} FLOPs (image batch), {text_step:.3e} (text batch)")
    print(f"  whole run: {total:.3e} FLOPs = {days:,.1f} GPU-days at {args.peak_tflops:g} TFLOP/s peak and "
          f"MFU {args.mfu:.2f}")
    for source in data.sources:
        print(f"  reads {source.kind} {source.label}: {source.path or '(built in)'} (weight {source.weight:g})")
    return EXIT_OK


# ============================================================================ memory
@subcommand(
    "memory", "analytic memory of one training step per stage: weights, gradients, AdamW state, activations (GiB)",
    example="dsvl-lab memory --preset dsvl-7b --stage stage2_joint --batch 1 --seq 4096 --precision bf16-mixed\n"
            "dsvl-lab memory --preset dsvl-7b --stage stage2_joint --batch 4 --seq 4096 --checkpointing --fsdp 8",
    details="Per trainable parameter 16 bytes (fp32) or 18 (bf16-mixed: fp32 weight, bf16 working copy, fp32\n"
            "gradient, AdamW m and v); activations are what autograd saves, per token, calibrated against\n"
            "measurement. Formulas: dsvl_lab/metrics/memory.py.",
    args=SHAPE_ARGS + [
        arg("--precision", choices=["fp32", "bf16-mixed"], default="bf16-mixed",
            help="fp32, or bf16-mixed (autocast over fp32 weights, the trainer's default)"),
        arg("--checkpointing", action="store_true",
            help="activation checkpointing of every LLM layer and SigLIP block"),
        arg("--fsdp", type=COUNT, default=1, help="FSDP (FULL_SHARD) world size sharing weights, gradients, AdamW"),
    ],
)
def cmd_memory(args) -> int:
    from ..config import DSVLConfig
    from ..inspection.model_tables import print_table
    from ..metrics.memory import GiB, stage_memory
    if args.config:
        args.preset, args.stage, _, args.seq = pieces_shape(args)

    config = DSVLConfig.from_name(args.preset)
    est = stage_memory(config, args.stage, args.batch, args.seq, args.precision, args.checkpointing, args.fsdp,
                       args.images)

    unit, scale = ("GiB", GiB) if est.total >= GiB else ("MiB", 2 ** 20)  # a miniature reads better in MiB

    def gib(value: int) -> str:
        return f"{value / scale:,.3f}"

    rows = [["weights", gib(est.weights)], ["gradients", gib(est.gradients)], ["AdamW state", gib(est.optimizer)],
            ["activations", gib(est.activations)]]
    rows += [[f"  saved: {name}", gib(value)] for name, value in est.saved.items()]
    rows += [[f"  transient: {name}", gib(value)] for name, value in est.transient.items() if value]
    rows += [["total (sum)", gib(est.total)], ["peak (estimate)", gib(est.peak)]]
    stage = getattr(args.stage, "name", args.stage)  # a StageSpec when read from --config pieces
    print(f"{args.preset}, {stage}: batch {args.batch} x {args.seq} tokens per device, {args.precision}, "
          f"checkpointing {'on' if args.checkpointing else 'off'}, FSDP world {args.fsdp}")
    print_table(["", unit], rows, right={1})
    print("\nactivations = saved + the larger of the loss head and a recomputed layer; peak = weights + AdamW +\n"
          "max(activations, gradients, SAM global block): backward frees activations as it writes gradients.")
    return EXIT_OK
