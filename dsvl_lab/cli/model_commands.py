"""Looking at models: ``presets`` (every preset's shapes and counts), ``info`` (a model folder)
and ``convert`` (any supported folder format -> ours).
"""
from __future__ import annotations

import json
from pathlib import Path

from .common import DTYPES, EXIT_OK, CLIError, arg, existing_folder, subcommand

# Imports of torch, the model and the libraries sit inside the command functions: the one place in
# the package where lazy imports are justified, so that `dsvl-lab --help` answers at once.


# ============================================================================ presets
@subcommand(
    "presets", "list every model preset with its shapes and parameter counts",
    example="dsvl-lab presets\ndsvl-lab presets --json > presets.json",
    args=[arg("--json", action="store_true", help="print JSON (exact counts) instead of a table")],
)
def cmd_presets(args) -> int:
    from ..config import DSVLConfig, preset_names
    from ..inspection.model_tables import millions, print_table, summarize

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
    from ..convert import folder_config

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
    from ..convert import detect_format
    from ..inspection.model_tables import millions, summarize

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

    from ..config import DSVLConfig
    from ..convert import detect_format
    from ..model import DSVLModel

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
