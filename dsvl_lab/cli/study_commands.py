"""Ablation studies: ``sweep`` (every arm x seed of a sweep.yaml, resumable), ``aggregate``
(a study's runs -> tables, plots and paired verdicts) and ``transfer`` (a conclusion at two sizes).
"""
from __future__ import annotations

from pathlib import Path

from .common import COUNT, EXIT_INTERRUPTED, EXIT_OK, CLIError, arg, subcommand, whole_number

# Imports of torch, the model and the libraries sit inside the command functions: the one place in
# the package where lazy imports are justified, so that `dsvl-lab --help` answers at once.


# ============================================================================ ablation sweeps
@subcommand(
    "sweep", "run an ablation study: every arm x seed of its sweep.yaml, resumable, paired by seed",
    example="dsvl-lab sweep ablations/encoder/sweep.yaml --dry-run\n"
            "dsvl-lab sweep ablations/encoder/sweep.yaml --jobs 3             (class mode, about 30 min on 2 cores)\n"
            "dsvl-lab sweep ablations/encoder/sweep.yaml --smoke --jobs 2     (micro presets, seconds)\n"
            "dsvl-lab sweep ablations/encoder/sweep.yaml --executor slurm --partition gpu --gpus-per-run 1",
    details="Runs go to OUT/<study>/ (OUT/<study>-smoke with --smoke): runs/<arm>-s<seed>-<hash>/result.json\n"
            "when done, stages/ for the stage trainings (shared by arms whose earlier stages are identical).\n"
            "Running the command again skips finished runs, resumes interrupted stages from their checkpoints\n"
            "and retries failed runs. Ctrl-C stops cleanly. Then: dsvl-lab aggregate OUT/<study>.",
    args=[
        arg("sweep_yaml", help="the study's sweep.yaml (ablations/<study>/sweep.yaml)"),
        arg("--out", default="runs/sweeps", help="root of the run folders (default runs/sweeps)"),
        arg("--smoke", action="store_true", help="micro presets, 3 steps a stage, 2 questions: checks the machinery"),
        arg("--jobs", type=COUNT, default=None,
            help="local processes at once, torch threads split between them (default: one per core, measured fastest)"),
        arg("--dry-run", action="store_true", help="list every run, what is done and what is shared; run nothing"),
        arg("--seeds", type=whole_number(0), nargs="+", default=None,
            help="only these of the study's seeds (default: all)"),
        arg("--reuse-from", default=None,
            help="another study's run folder: its stage trainings identical to this study's are copied, not rerun"),
        arg("--executor", default="local", choices=["local", "slurm", "submitit-local", "submitit-debug"],
            help="local processes (default), Slurm job arrays via submitit, or submitit's local/debug stand-ins"),
        arg("--partition", default=None, help="Slurm partition"),
        arg("--time-min", type=COUNT, default=None, help="Slurm time limit per run in minutes"),
        arg("--gpus-per-run", type=whole_number(0), default=None, help="Slurm GPUs per run"),
        arg("--array-parallelism", type=COUNT, default=None, help="Slurm array tasks at once"),
    ],
)
def cmd_sweep(args) -> int:
    from ..ablations import SweepSpec, plan_sweep, run_sweep
    from ..ablations.runner import describe

    spec = SweepSpec.load(args.sweep_yaml)  # every arm is validated here, before anything runs
    if args.jobs is not None and args.jobs < 1:
        raise CLIError("--jobs must be 1 or more")
    if args.dry_run:
        print(describe(plan_sweep(spec, args.out, args.smoke, args.seeds)))
        return EXIT_OK
    slurm = {key: value for key, value in (("partition", args.partition), ("time_min", args.time_min),
                                           ("gpus_per_run", args.gpus_per_run),
                                           ("array_parallelism", args.array_parallelism)) if value is not None}
    try:
        plan = run_sweep(spec, args.out, smoke=args.smoke, jobs=args.jobs, executor=args.executor, slurm=slurm,
                         seeds=args.seeds, reuse_from=args.reuse_from)
    except KeyboardInterrupt:  # the runner has said what was kept and how to go on
        return EXIT_INTERRUPTED
    failed = [name for name, status in plan.status().items() if status != "done"]
    print(f"next: dsvl-lab aggregate {plan.root}"
          + (f" --into {Path(args.sweep_yaml).parent}" if not args.smoke else ""))
    return 1 if failed else EXIT_OK


@subcommand(
    "aggregate", "a study's runs -> results.csv, results.md and plots (means, 95% CIs, paired verdicts)",
    example="dsvl-lab aggregate runs/sweeps/encoder --into ablations/encoder\n"
            "dsvl-lab aggregate runs/sweeps/encoder-smoke",
    details="Reads OUT/<study>/sweep.yaml and every finished run's result.json; writes results.csv,\n"
            "results.md, <stage>-intervals.png and the learning curves the YAML asks for into --into\n"
            "(default: the run folder). The same run folders always give the same bytes.",
    args=[
        arg("run_root", help="the study's run folder (runs/sweeps/<study>)"),
        arg("--into", default=None, help="where to write the tables and plots (default: RUN_ROOT)"),
    ],
)
def cmd_aggregate(args) -> int:
    from ..ablations import aggregate

    outcome = aggregate(args.run_root, args.into)
    into = Path(args.into or args.run_root)
    print((into / "results.md").read_text())
    print(f"wrote {', '.join(outcome['written'])}")
    if outcome["missing"]:
        print(f"note: {len(outcome['missing'])} runs are not finished: {', '.join(outcome['missing'])}")
    return EXIT_OK


@subcommand(
    "transfer", "does a study's conclusion hold one size up? each claim's interval and verdict at both sizes",
    example="dsvl-lab transfer ablations/encoder ablations/scaling/encoder \\\n"
            "    ablations/language_ratio ablations/scaling/language_ratio --into ablations/scaling",
    details="Each FOLDER is a committed study (its sweep.yaml beside the results.csv `dsvl-lab aggregate --into`\n"
            "wrote), in pairs: the smaller size, then the larger. Every claim of the larger study is matched with\n"
            "the same test in the smaller one; transfer.md and transfer.csv say whether it transfers (the same\n"
            "decisive verdict), does not (the opposite one), or is inconclusive at the larger size. The same\n"
            "folders always give the same bytes.",
    args=[
        arg("folders", nargs="+", help="study folders in pairs: smaller larger [smaller larger ...]"),
        arg("--into", required=True, help="where to write transfer.md and transfer.csv"),
    ],
)
def cmd_transfer(args) -> int:
    from ..ablations.transfer import write_transfer

    try:
        written = write_transfer(args.folders, args.into)
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(str(error)) from None
    print(written[0].read_text())
    print(f"wrote {', '.join(map(str, written))}")
    return EXIT_OK
