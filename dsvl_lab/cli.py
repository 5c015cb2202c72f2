"""The ``dsvl-lab`` command.

Every subcommand is one small function registered with :func:`subcommand`, which records its
name, one-line help, usage example and arguments in the ``COMMANDS`` table; :func:`main` builds
the argparse parser from that table. To add a subcommand, write a function that takes the parsed
``args`` and returns an exit code, and decorate it::

    @subcommand("hello", "say hello", example="dsvl-lab hello --name Ada",
                args=[arg("--name", default="world")])
    def cmd_hello(args):
        print(f"hello {args.name}")
        return 0

Expected problems (a missing folder, a bad config, an unknown preset) print one line to stderr and
exit with status 2, without a traceback; set ``DSVL_LAB_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# torch and the model are imported inside the subcommands that need them, so `dsvl-lab --help`
# answers at once.

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130  # 130: the shell's code for "stopped by SIGINT"
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# ============================================================================ the command table
@dataclass
class Command:
    name: str
    help: str
    example: str
    run: Callable[[argparse.Namespace], int]
    args: list[tuple[tuple, dict]] = field(default_factory=list)
    details: str = ""  # more text for --help, under the one-line help


COMMANDS: dict[str, Command] = {}


def arg(*names, **options) -> tuple[tuple, dict]:
    """One ``parser.add_argument(*names, **options)`` call, kept for later."""
    return names, options


def subcommand(name: str, help: str, example: str, args: list | None = None, details: str = ""):
    """Register the decorated function as ``dsvl-lab <name>``."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, example, run, list(args or []), details)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsvl-lab",
        description="A workbench for learning, reproducing and ablating DeepSeek-VL.",
        epilog="Example:\n  dsvl-lab presets\n\nRun 'dsvl-lab <command> --help' for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for command in COMMANDS.values():
        examples = command.example.splitlines()
        sub = commands.add_parser(
            command.name, help=command.help,
            description=command.help + ("\n\n" + command.details if command.details else ""),
            epilog=("Examples:" if len(examples) > 1 else "Example:") + "".join(f"\n  {e}" for e in examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for names, options in command.args:
            sub.add_argument(*names, **options)
        sub.set_defaults(run=command.run)
    return parser


class CLIError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def is_user_error(error: Exception) -> bool:
    """Problems with the input (paths, files, configs), as opposed to bugs, which keep their traceback."""
    expected = (CLIError, OSError, ValueError, KeyError)
    # A damaged weights file: safetensors has its own error type; check by name to avoid importing it.
    return isinstance(error, expected) or type(error).__name__ in ("SafetensorError", "UnpicklingError")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dsvl-lab`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["fit"]:  # LightningCLI parses its own arguments (and answers --help)
        return run_fit(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (KeyboardInterrupt, SystemExit) as error:
        if not stopped_by_ctrl_c(error):
            raise
        print(f"dsvl-lab {args.command}: stopped by Ctrl-C. {what_was_kept(getattr(args, 'out', None))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not is_user_error(error) or os.environ.get("DSVL_LAB_DEBUG"):
            raise
        # KeyError's str() wraps the message in quotes; args[0] is the message itself.
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"dsvl-lab {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def stopped_by_ctrl_c(error: BaseException) -> bool:
    """Ctrl-C, directly or as the ``sys.exit(1)`` Lightning turns it into after its own clean-up."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt))


def what_was_kept(out: str | None) -> str:
    """One sentence for Ctrl-C: what a run folder holds now and how to go on."""
    if not out or not Path(out).is_dir():
        return "Nothing was kept; files written before the stop are whole (every write is atomic)."
    from .run_folder import kept_summary

    return f"Kept in {out}: {kept_summary(out)}. Run the same command again to resume."


# ============================================================================ number options
# argparse calls an option's ``type=`` on its text; an ArgumentTypeError becomes one line,
# ``dsvl-lab chat: error: argument --top-p: must be in (0, 1], got 1.5``, and exit status 2,
# before anything is loaded. Every numeric option of every subcommand goes through one of these.
def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """``type=`` for an integer option in ``low..high`` (no upper end when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def real_number(low: float, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """``type=`` for a finite number option >= ``low`` (> ``low`` when ``low_open``), <= ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            left = f"({low}" if low_open else f"[{low}"
            bounds = f"in {left}, {high}]" if high is not None else f"{'>' if low_open else '>='} {low}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, got {text}")
        return value

    return parse


COUNT = whole_number(1)  # samples, steps, tokens, processes: at least one


# ============================================================================ shared helpers
def millions(n: int) -> str:
    """Millions with two decimals; '-' for a component the model does not have."""
    return f"{n / 1e6:,.2f}" if n else "-"


def param_breakdown(model) -> dict[str, int]:
    """Parameters per component: the two towers, the aligner and the language model."""
    parts = {
        "vision_model.low": getattr(model.vision_model, "low", None),
        "vision_model.high": getattr(model.vision_model, "high", None),
        "aligner": model.aligner,
        "language_model": model.language_model,
    }
    return {name: sum(p.numel() for p in module.parameters()) if module is not None else 0
            for name, module in parts.items()}


def meta_model(config):
    """Build the model on the meta device: shapes and counts only, no memory for weights."""
    import torch

    from .model import DSVLModel

    with torch.device("meta"):
        return DSVLModel(config)


def image_size_label(config) -> str:
    """'1024/384' for the hybrid (high/low view), else the single tower's size."""
    if config.encoder == "hybrid":
        return f"{config.sam.image_size}/{config.siglip.image_size}"
    return str(config.image_size)


def summarize(config) -> dict:
    """The numbers ``presets`` and ``info`` show for one config."""
    model = meta_model(config)
    return {
        "name": config.name,
        "encoder": config.encoder,
        "image_size": config.image_size,
        "image_size_label": image_size_label(config),
        "tokens_per_image": config.num_image_tokens,
        "llm_layers": config.llm.num_layers,
        "llm_width": config.llm.hidden_size,
        "params": model.num_params(),
        "params_by_component": param_breakdown(model),
    }


def print_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> None:
    """A plain-text table; columns whose index is in ``right`` are right-aligned (numbers)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


def existing_folder(path: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise CLIError(f"{folder} is not a folder; give the path of a model folder that is already on disk")
    return folder


# ============================================================================ output files
# A command overwrites only files of its own kind, recognised by their header: never a model's
# weights or config (`dsvl-lab trace --out model/model.safetensors` once replaced the weights).
MODEL_CONFIGS = ("dsvl_config.json", "config.json")
MODEL_SUFFIXES = (".safetensors", ".bin", ".json")  # what a model loader reads from its folder


def is_model_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in MODEL_CONFIGS)


def check_output_file(path: str, option: str, kind: str, is_own: Callable[[Path], bool]) -> Path:
    """The path ``option`` may write: a new file, or a ``kind`` file this command wrote before.

    Refused with the fix: a folder; an existing file ``is_own`` does not recognise (weights, a config,
    anyone else's file); a weights- or config-like file inside a model folder, where the model's
    loader would read it (every ``*.safetensors`` there is taken for weights).
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise CLIError(f"{option} {target} is a folder; give the path of the {kind} to write")
    if target.exists() and not is_own(target):
        raise CLIError(f"{option} {target} exists and is not a {kind} (this command overwrites only its own); "
                       f"it was left untouched: choose another path")
    if target.suffix in MODEL_SUFFIXES and is_model_folder(target.parent):
        raise CLIError(f"{option} {target} is inside the model folder {target.parent}, whose loader would read it "
                       f"as part of the model; write it somewhere else")
    return target


def file_starts_with(path: Path, prefix: bytes, also: bytes = b"") -> bool:
    """The file begins with ``prefix`` (and its first 4 KB hold ``also``): its kind, from the header."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(prefix) and also in head


def is_trace_file(path: Path) -> bool:
    """A safetensors file whose metadata carries ``dsvl_trace`` (what AttentionTrace.save writes)."""
    import struct

    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > min(path.stat().st_size, 100 << 20):  # not a safetensors header
                return False
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return False
    return isinstance(header, dict) and "dsvl_trace" in (header.get("__metadata__") or {})


def is_trace_page(path: Path) -> bool:
    return file_starts_with(path, b"<!doctype html>", b"<title>Attention trace:")


def is_png(path: Path) -> bool:
    return file_starts_with(path, b"\x89PNG\r\n\x1a\n")


# ============================================================================ presets
@subcommand(
    "presets", "list every model preset with its shapes and parameter counts",
    example="dsvl-lab presets\ndsvl-lab presets --json > presets.json",
    args=[arg("--json", action="store_true", help="print JSON (exact counts) instead of a table")],
)
def cmd_presets(args) -> int:
    from .config import DSVLConfig, preset_names

    summaries = [summarize(DSVLConfig.from_name(name)) for name in preset_names()]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return EXIT_OK
    headers = ["preset", "encoder", "image px", "img tokens", "LLM", "params",
               "low M", "high M", "aligner M", "LLM M"]
    rows = []
    for s in summaries:
        parts = s["params_by_component"]
        rows.append([s["name"], s["encoder"], s["image_size_label"], s["tokens_per_image"],
                     f"{s['llm_layers']} x {s['llm_width']}", f"{s['params']:,}",
                     *(millions(parts[k]) for k in ("vision_model.low", "vision_model.high", "aligner",
                                                    "language_model"))])
    print_table(headers, rows, right=set(range(2, len(headers))))
    print("\nimage px: high/low view for hybrids. low = SigLIP, high = SAM; M = millions of parameters.")
    return EXIT_OK


# ============================================================================ info
def read_folder_config(folder: Path, fmt: str):
    """The DSVLConfig of a model folder, read from its config file only (no weights).

    Checked before anything is built (types, sizes, known keys, the parameter ceiling), so an absurd
    config is one line naming the file and key, never a hang or a huge allocation.
    """
    from .convert import folder_config

    return folder_config(folder, fmt)


def weight_files_summary(folder: Path) -> str:
    """Size on disk and the stored dtypes, from the safetensors headers only."""
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        return "no weight files"
    size = sum(f.stat().st_size for f in files)
    dtypes: set[str] = set()
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(file), framework="pt") as handle:  # reads the header, not the tensors
                    dtypes.update(str(handle.get_slice(key).get_dtype()) for key in handle.keys())
            except Exception as error:  # safetensors raises its own error type for a damaged file
                raise CLIError(f"cannot read the header of {file}: {error}") from error
    stored = ", ".join(sorted(dtypes)) if dtypes else "unknown (.bin)"
    return f"{len(files)} file(s), {size / 2**20:,.1f} MiB, dtype {stored}"


@subcommand(
    "info", "show a model folder's format, config and parameter count (reads no weights)",
    example="dsvl-lab info runs/stage1/final\ndsvl-lab info ~/models/deepseek-vl-7b-chat",
    args=[arg("dir", help="a model folder: ours, transformers' DeepseekVL[Hybrid], or the original DeepSeek-VL")],
)
def cmd_info(args) -> int:
    from .convert import detect_format

    folder = existing_folder(args.dir)
    fmt = detect_format(folder)
    config = read_folder_config(folder, fmt)
    s = summarize(config)
    llm = config.llm
    print(f"folder      {folder}")
    print(f"format      {fmt}")
    print(f"weights     {weight_files_summary(folder)}")
    print(f"config      {config.name}: encoder {config.encoder}, image {s['image_size_label']} px, "
          f"{s['tokens_per_image']} tokens per image, pixel input {config.pixel_input}")
    for tower_name, tower in (("SigLIP", config.siglip), ("SAM", config.sam)):
        if tower is not None:
            print(f"{tower_name:<11} {tower.depth} x {tower.width}, patch {tower.patch_size}, {tower.num_heads} heads")
    print(f"aligner     {config.aligner.projector_type}, depth {config.aligner.depth}")
    print(f"LLM         {llm.num_layers} x {llm.hidden_size}, {llm.num_heads} heads ({llm.num_kv_heads} kv), "
          f"vocab {llm.vocab_size}, context {llm.max_position_embeddings}")
    print(f"params      {s['params']:,}")
    for component, count in s["params_by_component"].items():
        if count:
            print(f"  {component:<18} {millions(count):>10} M")
    return EXIT_OK


# ============================================================================ convert
@subcommand(
    "convert", "load a model folder in any supported format and write it in ours",
    example="dsvl-lab convert ~/models/deepseek-vl-1.3b-chat checkpoints/dsvl-1.3b --dtype bf16",
    args=[
        arg("src", help="model folder: ours, transformers' DeepseekVL[Hybrid], or the original DeepSeek-VL"),
        arg("dst", help="output folder (model.safetensors + dsvl_config.json)"),
        arg("--dtype", choices=sorted(DTYPES), default=None, help="cast the weights (default: keep the stored dtype)"),
        arg("--force", action="store_true", help="write into DST even if it already holds files"),
        arg("--preset", default=None,
            help="use this preset's config instead of the folder's (for an original checkpoint of a size the "
                 "original config does not describe)"),
    ],
    details="A transformers or original source becomes a model that takes raw [0, 1] images, as DSVLProcessor\n"
            "makes them (a transformers model itself takes pre-normalised views); a source in our format keeps\n"
            "its pixel_input. Nothing is downloaded.",
)
def cmd_convert(args) -> int:
    import torch

    from .config import DSVLConfig
    from .convert import detect_format
    from .model import DSVLModel

    src, dst = existing_folder(args.src), Path(args.dst)
    if dst.resolve() == src.resolve():
        raise CLIError("SRC and DST are the same folder; write the converted model somewhere else")
    if dst.exists() and not dst.is_dir():
        raise CLIError(f"{dst} is a file; DST is the folder to write model.safetensors and dsvl_config.json into")
    # A folder left half in another format would be ambiguous to detect_format; refuse, don't mix.
    if dst.exists() and any(dst.iterdir()) and not args.force:
        raise CLIError(f"{dst} is not empty; choose an empty folder or pass --force to write into it")
    if (dst / "config.json").is_file():  # even with --force: its weights would load beside ours
        raise CLIError(f"{dst} holds another model (config.json, a transformers or original folder); --force "
                       f"writes over our own format only: choose another folder")
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    # The config (the preset's, or the folder's, checked) fails here, before the slow read of the weights.
    fmt = detect_format(src)
    config = DSVLConfig.from_name(args.preset) if args.preset else read_folder_config(src, fmt)

    print(f"[1/3] reading {src} ({fmt} format)", flush=True)
    model = DSVLModel.from_pretrained(src, dtype=dtype, config=config)
    stored = next(model.parameters()).dtype
    print(f"[2/3] loaded {model.config.name}: {model.num_params():,} parameters, {str(stored).replace('torch.', '')}",
          flush=True)
    print(f"[3/3] writing {dst}", flush=True)
    model.save_pretrained(dst)
    print(f"done: {dst} (load it with DSVLModel.from_pretrained('{dst}'))")
    return EXIT_OK


# ============================================================================ data
@subcommand(
    "data", "look at and export the task families (the workbench's data world)",
    example="dsvl-lab data preview --family chart --n 8 --out preview.png\n"
            "dsvl-lab data preview --family ocr --detail fine --n 8 --out ocr-fine.png\n"
            "dsvl-lab data export --n 4 --out data_samples/tasks\n"
            "dsvl-lab data check data_samples/tasks/samples.jsonl",
    args=[
        arg("action", choices=["preview", "export", "check"],
            help="preview: contact sheet PNG; export: PNGs + samples.jsonl; check: read and validate a JSONL file"),
        arg("path", nargs="?", default=None, help="the JSONL file (check only)"),
        arg("--family", action="append", default=None, help="task family (repeatable; default: all)"),
        arg("--detail", choices=["coarse", "fine", "both"], default="both", help="detail level (default both)"),
        arg("--n", type=COUNT, default=8, help="samples per family and detail level (default 8)"),
        arg("--seed", type=whole_number(0), default=0, help="first seed (default 0)"),
        arg("--image-size", type=whole_number(64, 4096), default=256,
            help="image side in pixels, 64..4096 (default 256, the tiny preset)"),
        arg("--out", default=None, help="output PNG (preview) or folder (export)"),
        arg("--on-bad-sample", choices=["raise", "skip"], default="raise", help="check: stop or skip (default raise)"),
        arg("--allow-outside-paths", action="store_true",
            help="check: allow image paths outside the JSONL file's folder (absolute, '..', symlinks); "
                 "only for files you trust"),
        arg("--max-image-pixels", type=int, default=None,
            help="check: refuse images with more pixels (default 64,000,000, the processor's limit)"),
    ],
)
def cmd_data(args) -> int:
    from .data import jsonl
    from .data.tasks import FAMILIES, generate_samples

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
            "DSVLModel.from_foundation(preset) finds them.",
    args=[
        arg("part", choices=["lm", "siglip", "sam"], help="which foundation part to train"),
        arg("--preset", default="dsvl-tiny-hybrid", help="a dsvl-tiny-* or dsvl-small-* preset (default dsvl-tiny-hybrid)"),
        arg("--out", required=True, help="run folder (created; an existing run there is resumed)"),
        arg("--smoke", action="store_true", help="a few steps on small pools: checks the command, trains nothing useful"),
        arg("--steps", type=COUNT, default=None, help="optimizer steps (default: the recipe's)"),
        arg("--batch-size", type=COUNT, default=None, help="batch size (default: the recipe's)"),
        arg("--lr", type=real_number(0, low_open=True), default=None, help="peak learning rate (default: the recipe's)"),
        arg("--seed", type=whole_number(0, 2**32 - 1), default=None,  # Lightning's seed_everything range
            help="seed of the initialisation and batches (default 0)"),
        arg("--ship", action="store_true", help="copy the result into data_samples/foundation/<size>/"),
        arg("--no-progress", action="store_true", help="no progress bar (logs only)"),
    ],
)
def cmd_pretrain(args) -> int:
    from .foundation import FOUNDATION_DIR, pretrain

    overrides = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    command = "dsvl-lab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["pretrain"] else None
    pretrain(args.part, args.preset, args.out, smoke=args.smoke, ship_to=FOUNDATION_DIR if args.ship else None,
                    progress=not args.no_progress, command=command,
                    **{k: v for k, v in overrides.items() if v is not None})
    print((Path(args.out) / f"{args.part}.md").read_text())
    return 0


# ============================================================================ trace
def parse_layers(text: str | None):
    """``"-1"`` / ``"0,3"`` (the same layers of every component) or ``"sam:1,sam:3,llm:-1"`` (per component)."""
    if not text:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        if not any(":" in item for item in items):
            return [int(item) for item in items]
        per_component: dict[str, list[int]] = {}
        for item in items:
            component, index = item.split(":")
            per_component.setdefault(component.strip(), []).append(int(index))
        return per_component
    except ValueError:
        raise CLIError(f"--layers {text!r}: write layer indexes like '0,3' or '-1', or 'sam:1,llm:-1'") from None


def trace_source_model(args):
    """The model a trace reads: a saved folder (--model) or a preset (--preset, with --foundation weights)."""
    from .model import DSVLModel

    if bool(args.model) == bool(args.preset):
        raise CLIError("give exactly one of --model DIR (a save_pretrained folder) and --preset NAME")
    if args.model:
        from .training.handoff import model_folder

        folder = model_folder(existing_folder(args.model))  # a pipeline stage folder's model/
        return DSVLModel.from_pretrained(folder), str(folder)
    if args.foundation:
        return DSVLModel.from_foundation(args.preset), f"{args.preset} (foundation weights, fresh aligner)"
    import torch

    torch.manual_seed(0)
    return DSVLModel.from_name(args.preset), f"{args.preset} (random weights, seed 0)"


@subcommand(
    "trace", "capture attention (LLM, SigLIP, SAM) on one task image and save it as a trace file",
    example="dsvl-lab trace --preset dsvl-tiny-hybrid --foundation --family chart --out chart.safetensors\n"
            "dsvl-lab trace --model runs/demo/stage3_sft --family ocr --components llm,sam --layers sam:1,llm:-1 "
            "--out ocr.safetensors --html ocr.html\n"
            "dsvl-lab trace --preset dsvl-micro-hybrid --family scene --heads 0 --answer generate --out micro.safetensors",
    details="The model sees one held-out task sample (--family, --detail, --seed) with its signature question\n"
            "(or --prompt) and, by default, the reference answer (teacher forcing, so traces of different\n"
            "models line up token for token); --answer generate traces the model's own greedy answer.\n"
            "Open the file with AttentionExplorer.from_trace(FILE) or AttentionTrace.load(FILE); --html also\n"
            "writes a self-contained page with the static figures. A capture over --budget-gb is refused\n"
            "with the memory it would need: select fewer --layers or --heads.",
    args=[
        arg("--model", default=None, help="a folder written by DSVLModel.save_pretrained (or a pipeline stage folder)"),
        arg("--preset", default=None, help="a preset name instead of --model (random weights unless --foundation)"),
        arg("--foundation", action="store_true", help="with --preset: the shipped foundation LLM, SigLIP and SAM"),
        arg("--family", default="chart", help="task family: chart, ocr, doc, screen, scene (default chart)"),
        arg("--detail", choices=["coarse", "fine"], default="fine", help="detail level (default fine)"),
        arg("--seed", type=whole_number(0), default=None, help="sample seed (default: the first held-out evaluation seed)"),
        arg("--prompt", default=None, help="the question (default: the sample's signature question)"),
        arg("--answer", default="reference",
            help="'reference' (the sample's answer, default), 'generate' (the model's own) or any text"),
        arg("--components", default=None, help="comma list of llm, siglip, sam (default: all the model has)"),
        arg("--layers", default=None, help="'0,3', '-1' (every component) or 'sam:1,llm:-1' (default: all layers)"),
        arg("--heads", default=None, help="comma list of head indexes to keep (default: all)"),
        arg("--budget-gb", type=real_number(0, low_open=True), default=2.0, help="refuse captures needing more memory (default 2)"),
        arg("--label", default=None, help="a name shown in the explorer (default: the model)"),
        arg("--out", required=True, help="the trace file to write (.safetensors)"),
        arg("--html", default=None, help="also write a self-contained HTML page with the figures"),
    ],
)
def cmd_trace(args) -> int:
    from .inspection.attention_trace import trace_task

    # Before the model loads: an output path that would replace someone's file is refused at once.
    check_output_file(args.out, "--out", "trace file", is_trace_file)
    if args.html:
        check_output_file(args.html, "--html", "trace page", is_trace_page)
    layers = parse_layers(args.layers)
    try:
        heads = [int(h) for h in args.heads.split(",")] if args.heads else None
    except ValueError:
        raise CLIError(f"--heads {args.heads!r}: write head indexes like '0,1'") from None
    components = [c.strip() for c in args.components.split(",")] if args.components else None
    model, described = trace_source_model(args)
    answer = None if args.answer == "generate" else args.answer
    meta = {"source": described, **({"label": args.label} if args.label else {})}
    trace = trace_task(model, args.family, args.seed, args.detail, prompt=args.prompt, answer=answer,
                       components=components, layers=layers, heads=heads, budget_gb=args.budget_gb, meta=meta)
    out = trace.save(args.out)
    print(f"traced {described}: {len(trace.layers())} layer(s) {', '.join(trace.layers())}; "
          f"prompt {trace.meta['prompt']!r}, answer {trace.meta['answer']!r}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); open it with AttentionExplorer.from_trace('{out}')")
    if args.html:
        print(f"wrote {trace.to_html(args.html)}")
    return EXIT_OK


# ============================================================================ fit (one stage, LightningCLI)
FIT_EXAMPLE = ("dsvl-lab fit --config configs/model/dsvl-tiny-hybrid.yaml --config configs/stage/stage1_adaptor.yaml \\\n"
               "    --config configs/trainer/cpu.yaml --trainer.default_root_dir runs/fit-stage1\n"
               "dsvl-lab fit --config configs/model/dsvl-tiny-hybrid.yaml --config configs/stage/stage2_joint.yaml \\\n"
               "    --config configs/data/no-warmup.yaml --config configs/trainer/cpu.yaml \\\n"
               "    --model.start runs/fit-stage1 --trainer.default_root_dir runs/fit-stage2")


@subcommand(
    "fit", "train one stage from composable YAML pieces (Lightning's LightningCLI; --help lists every key)",
    example=FIT_EXAMPLE,
    details="Pieces in configs/: model/ (preset), stage/ (a whole StageSpec), data/ (mixture changes),\n"
            "trainer/ (cpu, ddp-cpu, gpu, fsdp-7b). Later --config files override earlier ones key by key;\n"
            "any key can be set directly (--model.stage.learning_rate 1e-4). Resume: --ckpt_path last.",
)
def cmd_fit(args) -> int:  # never called: main() hands `fit` to LightningCLI, which parses its own arguments
    raise CLIError("dsvl-lab fit is handled by LightningCLI")


def run_fit(argv: list[str]) -> int:
    """``dsvl-lab fit ...`` -> LightningCLI; bad settings exit 2 with the key named, before training."""
    from .training.lightning_cli import main as lightning_main

    def fit_folder() -> str | None:
        from .training import lightning_cli

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
        arg("--num-workers", type=whole_number(0), default=1,
            help="data loader worker processes (default 1; 0 loads in the main process)"),
        arg("--no-progress", action="store_true", help="no progress bars (logs only)"),
    ],
)
def cmd_pipeline(args) -> int:
    from .training import run_pipeline

    run_pipeline(args.preset, args.out, smoke=args.smoke, progress=not args.no_progress,
                 eval_samples=args.eval_samples, num_workers=args.num_workers)
    print("\n" + (Path(args.out) / "report.md").read_text())
    return EXIT_OK


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
        arg("--seeds", type=whole_number(0), nargs="+", default=None, help="only these of the study's seeds (default: all)"),
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
    from .ablations import SweepSpec, plan_sweep, run_sweep
    from .ablations.runner import describe

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
    print(f"next: dsvl-lab aggregate {plan.root}" + (f" --into {Path(args.sweep_yaml).parent}" if not args.smoke else ""))
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
    from .ablations import aggregate

    outcome = aggregate(args.run_root, args.into)
    into = Path(args.into or args.run_root)
    print((into / "results.md").read_text())
    print(f"wrote {', '.join(outcome['written'])}")
    if outcome["missing"]:
        print(f"note: {len(outcome['missing'])} runs are not finished: {', '.join(outcome['missing'])}")
    return EXIT_OK


# ============================================================================ chat
@subcommand(
    "chat", "chat with a trained pipeline output or a real DeepSeek-VL folder (answers stream as they come)",
    example="dsvl-lab chat --checkpoint runs/demo --image chart.png --prompt \"What colour is the largest slice?\"\n"
            "dsvl-lab chat --checkpoint runs/demo/stage2_joint --prompt \"The cat sat on\" --max-new-tokens 20\n"
            "dsvl-lab chat --checkpoint ~/models/deepseek-vl-7b-chat --image photo.jpg --dtype bf16 --interactive\n"
            "dsvl-lab chat --checkpoint runs/demo --prompt \"Tell a story\" --sample --temperature 0.8 --seed 1",
    details="CHECKPOINT is a pipeline output (runs/demo: the last finished stage of stage1_adaptor,\n"
            "stage2_joint, stage3_sft is used), one stage's folder (runs/demo/stage3_sft: its model/),\n"
            "a folder written by DSVLModel.save_pretrained, or a DeepSeek-VL folder in the original or\n"
            "the transformers format (with its tokenizer.json and preprocessor_config.json).\n"
            "The prompt is written in the chat template (\"User: <image>... Assistant:\"); the answer is\n"
            "printed to stdout token by token, what was loaded to stderr. Greedy unless --sample.\n"
            "--interactive keeps the conversation: each new prompt continues it; Ctrl-D or 'exit' ends.",
    args=[
        arg("--checkpoint", required=True, help="pipeline output, stage folder or model folder"),
        arg("--image", default=None, help="an image file (PNG, JPEG, ...); leave out for text-only chat"),
        arg("--prompt", default=None, help="what to ask (required unless --interactive)"),
        arg("--interactive", action="store_true", help="keep chatting: read more prompts from the terminal"),
        arg("--max-new-tokens", type=COUNT, default=64, help="longest answer in tokens (default 64)"),
        arg("--dtype", choices=sorted(DTYPES), default=None, help="cast the weights (default: the stored dtype)"),
        arg("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps (default auto)"),
        arg("--sample", action="store_true", help="sample instead of greedy decoding"),
        arg("--temperature", type=real_number(0), default=1.0,
            help="sampling temperature >= 0 (default 1.0; with --sample; 0 is as good as greedy)"),
        arg("--top-p", type=real_number(0, 1, low_open=True), default=1.0,
            help="nucleus sampling: keep the top tokens up to this mass, in (0, 1] (default 1: all)"),
        arg("--top-k", type=whole_number(0), default=0, help="sample among the k most likely tokens (0 = all)"),
        arg("--seed", type=whole_number(0, 2**63 - 1), default=None, help="seed of the sampling, for repeatable answers"),
    ],
)
def cmd_chat(args) -> int:
    import torch

    from .chat import chat, check_image_file, load_chat_model, repl

    # Check what is cheap to check before loading a model that may take minutes.
    if not args.interactive and not args.prompt:
        raise CLIError("give --prompt \"...\" (or --interactive to type prompts)")
    check_image_file(args.image)
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    model, processor, description = load_chat_model(args.checkpoint, dtype=dtype, device=args.device)
    print(f"loaded {description}", file=sys.stderr)
    generation = dict(max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
                      top_p=args.top_p, top_k=args.top_k, seed=args.seed)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if args.interactive:
        print("(Ctrl-D or 'exit' ends the chat)", file=sys.stderr)
        repl(model, processor, image=args.image, first_prompt=args.prompt, write=write, **generation)
        return EXIT_OK
    chat(model, processor, args.prompt, image=args.image, stream=write, **generation)
    write("\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
