"""Training: ``fit`` (one stage from composable YAML pieces, through Lightning's LightningCLI) and
``pipeline`` (the three stages 1 -> 2 -> 3 with a report after each).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import (COMMANDS, COUNT, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Command, arg, is_user_error,
                     stopped_by_ctrl_c, subcommand, what_was_kept, workers_or_auto)

# Imports of torch, the model and the libraries sit inside the command functions: the one place in
# the package where lazy imports are justified, so that `dsvl-lab --help` answers at once.


# ============================================================================ fit (one stage, LightningCLI)
FIT_EXAMPLE = ("dsvl-lab fit --config configs/model/dsvl-tiny-hybrid.yaml "
               "--config configs/stage/stage1_adaptor.yaml \\\n"
               "    --config configs/trainer/cpu.yaml --trainer.default_root_dir runs/fit-stage1\n"
               "dsvl-lab fit --config configs/model/dsvl-tiny-hybrid.yaml --config configs/stage/stage2_joint.yaml \\\n"
               "    --config configs/data/no-warmup.yaml --config configs/trainer/cpu.yaml \\\n"
               "    --model.start runs/fit-stage1 --trainer.default_root_dir runs/fit-stage2")


# `fit` has an entry in the table, for `dsvl-lab --help`, but no run function: main() hands
# `dsvl-lab fit ...` to LightningCLI (run_fit) before argparse sees it, and LightningCLI parses its
# own arguments and answers `dsvl-lab fit --help` with this help and example.
COMMANDS["fit"] = Command(
    "fit", "train one stage from composable YAML pieces (Lightning's LightningCLI; --help lists every key)",
    example=FIT_EXAMPLE, run=None,
    details="Pieces in configs/: model/ (preset), stage/ (a whole StageSpec), data/ (mixture changes),\n"
            "trainer/ (cpu, ddp-cpu, gpu, fsdp-7b). Later --config files override earlier ones key by key;\n"
            "any key can be set directly (--model.stage.learning_rate 1e-4). Resume: --ckpt_path last.",
)


def run_fit(argv: list[str]) -> int:
    """``dsvl-lab fit ...`` -> LightningCLI; bad settings exit 2 with the key named, before training."""
    from ..training.lightning_cli import main as lightning_main

    def fit_folder() -> str | None:
        from ..training import lightning_cli

        return lightning_cli.FIT_FOLDER

    try:
        lightning_main(["fit", *argv], description=COMMANDS["fit"].help, example=FIT_EXAMPLE)
    except (KeyboardInterrupt, SystemExit) as error:
        if not stopped_by_ctrl_c(error):
            raise
        print(f"dsvl-lab fit: stopped by Ctrl-C. {what_was_kept(fit_folder())}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not is_user_error(error) or os.environ.get("DSVL_LAB_DEBUG"):
            raise
        print(f"dsvl-lab fit: error: {readable_config_error(error)}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def readable_config_error(error: Exception) -> str:
    """jsonargparse reports a bad ``model.stage`` once per type it could have been (StageSpec or a
    preset name); keep only the reasons, which name the key."""
    lines = str(error).splitlines()
    if not lines or "Union subtypes" not in lines[0]:
        return str(error)
    reasons = [line.strip()[2:] for line in lines if line.strip().startswith("- ") and "Expected a <class" not in line]
    return "; ".join(reasons) or str(error)


# ============================================================================ pipeline (stages 1 -> 2 -> 3)
@subcommand(
    "pipeline", "run the three training stages 1 -> 2 -> 3 and write report.json / report.md after each",
    example="dsvl-lab pipeline --preset dsvl-tiny-hybrid --out runs/demo\n"
            "dsvl-lab pipeline --preset dsvl-micro-hybrid --out /tmp/check --smoke",
    details="Stage 1 starts from the shipped foundation parts (tiny and small presets; micro presets start\n"
            "from random weights). Each stage checks the checkpoint it receives. OUT gets one folder per stage\n"
            "(logs/, checkpoints/last.ckpt, model/) and report.json / report.md. Running the same command again\n"
            "resumes an interrupted stage from its last.ckpt and skips nothing else.",
    args=[
        arg("--preset", default="dsvl-tiny-hybrid", help="model preset (default dsvl-tiny-hybrid)"),
        arg("--out", required=True, help="run folder (created)"),
        arg("--smoke", action="store_true", help="a few steps per stage: checks the pipeline, learns nothing"),
        arg("--eval-samples", type=COUNT, default=None, help="held-out questions per family and detail (default 40)"),
        arg("--num-workers", type=workers_or_auto, default="auto",
            help="data loader worker processes (default auto: 0 on a CPU, where a worker competes with the "
                 "model for the cores, 1 with a GPU; 0 loads in the main process)"),
        arg("--precision", default="auto", choices=("auto", "32-true", "bf16-mixed"),
            help="training precision (default auto: bf16 autocast where bf16 matmuls are fast here, else fp32)"),
        arg("--sample-cache", default="auto", metavar="auto|off|DIR",
            help="rendered task samples, drawn once and read back (default auto: $DSVL_LAB_SAMPLE_CACHE, else "
                 "sample-cache beside OUT, e.g. runs/sample-cache); rendered first with a progress bar"),
        arg("--no-progress", action="store_true", help="no progress bars (logs only)"),
    ],
)
def cmd_pipeline(args) -> int:
    from ..training import run_pipeline

    run_pipeline(args.preset, args.out, smoke=args.smoke, progress=not args.no_progress,
                 eval_samples=args.eval_samples, num_workers=args.num_workers, precision=args.precision,
                 sample_cache=args.sample_cache)
    print("\n" + (Path(args.out) / "report.md").read_text())
    return EXIT_OK
