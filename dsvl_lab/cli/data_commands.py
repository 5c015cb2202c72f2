"""The data world and what is pretrained on it: ``data`` (preview, export and check the task
families) and ``pretrain`` (the miniature foundation parts: LLM, SigLIP, SAM).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .common import COUNT, EXIT_OK, CLIError, arg, real_number, subcommand, whole_number
from .output_files import check_output_file, is_png

DEFAULT_PIXELS = 64_000_000  # the processor's max_image_pixels (dsvl_lab.data.jsonl.DEFAULT_MAX_IMAGE_PIXELS)

# Imports of torch, the model and the libraries sit inside the command functions: the one place in
# the package where lazy imports are justified, so that `dsvl-lab --help` answers at once.


# ============================================================================ data
@subcommand(
    "data", "look at and export the task families (the workbench's data world)",
    example="dsvl-lab data preview --family chart --n 8 --out preview.png\n"
            "dsvl-lab data preview --family ocr --detail fine --n 8 --out ocr-fine.png\n"
            "dsvl-lab data export --n 4 --out data_samples/tasks\n"
            "dsvl-lab data check data_samples/tasks/samples.jsonl\n"
            "dsvl-lab data check runs/photos/photos.json --kind llava --image-folder data_samples/photos\n"
            "dsvl-lab data convert data_samples/photos/photos.jsonl --to llava --out runs/photos/llava.json\n"
            "dsvl-lab data convert data_samples/photos/photos.jsonl --to hf --out runs/photos/hf   (images embedded)\n"
            "dsvl-lab data cache ablations/encoder/sweep.yaml --workers 2   (pre-render a sweep's samples)\n"
            "dsvl-lab data cache --preset dsvl-tiny-hybrid   (what make demo draws, into runs/sample-cache)\n"
            "dsvl-lab data cache --verify 100   |   dsvl-lab data cache --clear   (runs/sweeps/sample-cache)",
    details="cache: the shared cache of rendered task samples (README \"The sample cache\"). With a sweep.yaml it\n"
            "renders everything the sweep's runs still draw into <out>/sample-cache (--out as for dsvl-lab sweep,\n"
            "default runs/sweeps; DSVL_LAB_SAMPLE_CACHE or --cache choose another folder); with --preset, what\n"
            "dsvl-lab pipeline draws, into runs/sample-cache (the pipeline's default for --out runs/<name>, which\n"
            "also renders what is missing itself before its stages). --verify N compares N\n"
            "random entries with fresh renderings; --clear deletes the folder.\n"
            "convert: one of our sample files into another format a stage's sources read (README \"Training on\n"
            "your own data\"): jsonl, llava (.json list or .jsonl), hf (a datasets folder) or parquet; llava and\n"
            "jsonl keep the image paths relative to the input's folder (give it as the source's image_folder),\n"
            "hf and parquet embed the images.",
    args=[
        arg("action", choices=["preview", "export", "check", "cache", "convert"],
            help="preview: contact sheet PNG; export: PNGs + samples.jsonl; check: read and validate a JSONL file; "
                 "cache: pre-render, verify or clear the sample cache; convert: a sample file into another format"),
        arg("path", nargs="?", default=None,
            help="the JSONL file (check, convert) or a study's sweep.yaml (cache)"),
        arg("--to", choices=["jsonl", "llava", "hf", "parquet"], default=None, help="convert: the output format"),
        arg("--kind", choices=["samples", "llava", "text", "hf", "parquet"], default=None,
            help="check: read PATH as a stage source of this kind (every row as a stage draws it, headers only)"),
        arg("--image-folder", default=None,
            help="check --kind: where the rows' relative image paths point (default: the file's folder)"),
        arg("--family", action="append", default=None, help="task family (repeatable; default: all)"),
        arg("--detail", choices=["coarse", "fine", "both"], default="both", help="detail level (default both)"),
        arg("--n", type=COUNT, default=8, help="samples per family and detail level (default 8)"),
        arg("--seed", type=whole_number(0), default=0, help="first seed (default 0)"),
        arg("--image-size", type=whole_number(64, 4096), default=256,
            help="image side in pixels, 64..4096 (default 256, the tiny preset)"),
        arg("--out", default=None,
            help="output PNG (preview) or folder (export); cache: the sweeps' root, as for dsvl-lab sweep "
                 "(default runs/sweeps)"),
        arg("--on-bad-sample", choices=["raise", "skip"], default="raise", help="check: stop or skip (default raise)"),
        arg("--allow-outside-paths", action="store_true",
            help="check: allow image paths outside the JSONL file's folder (absolute, '..', symlinks); "
                 "only for files you trust"),
        arg("--max-image-pixels", type=int, default=None,
            help="check: refuse images with more pixels (default 64,000,000, the processor's limit)"),
        arg("--preset", default=None, help="cache: pre-render what `dsvl-lab pipeline --preset PRESET` draws"),
        arg("--smoke", action="store_true", help="cache: the --smoke version of the sweep or pipeline"),
        arg("--cache", default=None, help="cache: the cache folder (default: DSVL_LAB_SAMPLE_CACHE, else "
                                          "<out>/sample-cache for a sweep, runs/sample-cache with --preset)"),
        arg("--workers", type=COUNT, default=None, help="cache: rendering processes (default: one per core)"),
        arg("--verify", type=whole_number(0), default=0, metavar="N",
            help="cache: render N random entries afresh and compare them with the cache"),
        arg("--clear", action="store_true", help="cache: delete the cache folder (every version)"),
    ],
)
def cmd_data(args) -> int:
    from ..data import jsonl
    from ..data.tasks import FAMILIES, generate_samples

    if args.action == "check" and args.kind:
        return check_source_command(args)
    if args.action == "check":
        if not args.path:
            raise CLIError("check needs the JSONL file: dsvl-lab data check FILE")
        # Streams: one line at a time and image headers only, so any file length fits in memory.
        result = jsonl.check_jsonl(args.path, on_bad_sample=args.on_bad_sample,
                                   allow_outside_paths=args.allow_outside_paths,
                                   max_image_pixels=args.max_image_pixels or jsonl.DEFAULT_MAX_IMAGE_PIXELS)
        for problem in result.problems:
            print(f"skipped {problem}")
        print(result.summary())
        return EXIT_OK
    if args.action == "cache":
        return cache_command(args)
    if args.action == "convert":
        return convert_command(args)
    if args.action == "preview":  # before drawing the samples
        check_output_file(args.out or "preview.png", "--out", "PNG image", is_png)
    families = args.family or list(FAMILIES)
    details = ["coarse", "fine"] if args.detail == "both" else [args.detail]
    samples = [sample for family in families for detail in details
               for sample in generate_samples(family, args.n, start_seed=args.seed, detail=detail,
                                              image_size=args.image_size)]
    if args.action == "preview":
        out = jsonl.contact_sheet(samples, args.out or "preview.png")
        print(f"wrote {out} ({len(samples)} samples)")
    else:
        out = jsonl.write_jsonl(samples, Path(args.out or "samples") / "samples.jsonl")
        print(f"wrote {out} and {len(samples)} images")
    return EXIT_OK


def check_source_command(args) -> int:
    from ..data.sources import SourceSpec
    from ..data.sources.check import check_source

    if not args.path:
        raise CLIError("check --kind needs the file or folder: dsvl-lab data check FILE --kind llava")
    spec = SourceSpec(kind=args.kind, path=args.path, image_folder=args.image_folder,
                      allow_outside_paths=args.allow_outside_paths)
    result = check_source(spec, args.max_image_pixels or DEFAULT_PIXELS)
    for problem in result.problems:
        print(f"bad {problem}")
    print(result.summary())
    return EXIT_OK


def convert_command(args) -> int:
    from ..data.sources.convert import convert

    if not (args.path and args.to and args.out):
        raise CLIError("convert needs a sample file, a format and an output: "
                       "dsvl-lab data convert FILE --to llava --out OUT.json")
    out = convert(args.path, args.to, args.out)
    folder = Path(args.path).resolve().parent
    kind = {"jsonl": "samples"}.get(args.to, args.to)
    image_folder = f", image_folder: {folder}" if args.to in ("jsonl", "llava") else ""
    print(f"wrote {out}; as a stage source: {{kind: {kind}, path: {out}{image_folder}}}")
    return EXIT_OK


def cache_root(args) -> Path:
    """The cache folder of ``dsvl-lab data cache``: --cache, else DSVL_LAB_SAMPLE_CACHE, else the default
    of what is pre-rendered: a sweep's ``<out>/sample-cache`` (``runs/sweeps/sample-cache``), or with
    --preset a pipeline's ``sample-cache`` beside its folder (``runs/sample-cache``)."""
    import os

    from ..data.sample_cache import AUTO, CACHE_FOLDER, ENV, resolve_root

    if args.cache:
        return Path(args.cache)
    default = Path("runs") / CACHE_FOLDER if args.preset else Path(args.out or "runs/sweeps") / CACHE_FOLDER
    root = resolve_root(AUTO, default)
    if root is None:
        raise CLIError(f"{ENV} is set to {os.environ[ENV]!r}: no cache; name a folder with --cache DIR")
    return root


def cache_command(args) -> int:
    """``dsvl-lab data cache``: pre-render a sweep's or a pipeline's samples, verify entries, or clear."""
    import os

    from ..data import sample_cache

    if args.path and args.preset:
        raise CLIError("give a sweep.yaml or --preset, not both")
    root = cache_root(args)
    if args.clear:
        entries, size = sample_cache.folder_size(root)
        sample_cache.clear(root)
        print(f"removed {root} ({entries} samples, {size / 1e6:.1f} MB)")
        return EXIT_OK
    workers = args.workers or os.cpu_count() or 1
    cache = sample_cache.open_cache(str(root.resolve()))
    if args.path:
        from ..ablations import SweepSpec, plan_sweep
        from ..ablations.runner import prebuild

        prebuild(plan_sweep(SweepSpec.load(args.path), args.out or "runs/sweeps", args.smoke), root, workers)
    elif args.preset:
        from ..training.run import pipeline_sample_keys

        stats = sample_cache.build(cache, pipeline_sample_keys(args.preset, args.smoke), workers=workers)
        print(f"sample cache {cache.folder}: {stats['samples']} samples for the {args.preset} pipeline, "
              f"{stats['present']} already there, {stats['rendered']} rendered")
    if args.verify:
        report = sample_cache.verify(cache, args.verify)
        bad = report["mismatched"]
        print(f"verified {report['checked']} entries against fresh renderings: "
              + (f"{len(bad)} differ, e.g. {bad[:3]}" if bad else "all equal"))
        if bad:
            return 1
    entries, size = sample_cache.folder_size(root)
    print(f"{root}: {entries} samples, {size / 1e6:.1f} MB")
    return EXIT_OK


@subcommand(
    "pretrain", "pretrain a miniature foundation part: the LLM, SigLIP or SAM (Lightning run, resumable)",
    example="dsvl-lab pretrain lm --preset dsvl-tiny-hybrid --out runs/lm-tiny\n"
            "dsvl-lab pretrain siglip --preset dsvl-tiny-hybrid --out runs/siglip-tiny --ship\n"
            "dsvl-lab pretrain sam --preset dsvl-tiny-hybrid --out runs/sam-tiny --smoke",
    details="lm: next-token pretraining on the corpus' train split plus task texts.\n"
            "siglip: SigLIP's sigmoid loss on low-res image/caption pairs (the text tower is thrown away).\n"
            "sam: dense per-pixel texture labels at the high-res size (the light decoder is thrown away).\n"
            "OUT gets <part>.safetensors (bf16), <part>.json / <part>.md (the model card), a learning curve,\n"
            "logs/metrics.csv and checkpoints/last.ckpt; running the same command again resumes from it.\n"
            "--ship copies the weights and card into data_samples/foundation/<size>/, where\n"
            "dsvl_lab.foundation.from_foundation(preset) finds them.",
    args=[
        arg("part", choices=["lm", "siglip", "sam"], help="which foundation part to train"),
        arg("--preset", default="dsvl-tiny-hybrid",
            help="a dsvl-tiny-* or dsvl-small-* preset (default dsvl-tiny-hybrid)"),
        arg("--out", required=True, help="run folder (created; an existing run there is resumed)"),
        arg("--smoke", action="store_true",
            help="a few steps on small pools: checks the command, trains nothing useful"),
        arg("--steps", type=COUNT, default=None, help="optimizer steps (default: the recipe's)"),
        arg("--batch-size", type=COUNT, default=None, help="batch size (default: the recipe's)"),
        arg("--lr", type=real_number(0, low_open=True), default=None,
            help="peak learning rate (default: the recipe's)"),
        arg("--seed", type=whole_number(0, 2**32 - 1), default=None,  # Lightning's seed_everything range
            help="seed of the initialisation and batches (default 0)"),
        arg("--ship", action="store_true", help="copy the result into data_samples/foundation/<size>/"),
        arg("--no-progress", action="store_true", help="no progress bar (logs only)"),
    ],
)
def cmd_pretrain(args) -> int:
    from ..foundation import FOUNDATION_DIR, pretrain

    overrides = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    command = "dsvl-lab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["pretrain"] else None
    pretrain(args.part, args.preset, args.out, smoke=args.smoke, ship_to=FOUNDATION_DIR if args.ship else None,
                    progress=not args.no_progress, command=command,
                    **{k: v for k, v in overrides.items() if v is not None})
    print((Path(args.out) / f"{args.part}.md").read_text())
    return 0
