"""``trace``: capture attention (LLM, SigLIP, SAM) on one task image and save it as a trace file.
"""
from __future__ import annotations

from .common import EXIT_OK, CLIError, arg, existing_folder, real_number, subcommand, whole_number
from .output_files import check_output_file, is_trace_file, is_trace_page

# Imports of torch, the model and the libraries sit inside the command functions: the one place in
# the package where lazy imports are justified, so that `dsvl-lab --help` answers at once.


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
    from ..model import DSVLModel

    if bool(args.model) == bool(args.preset):
        raise CLIError("give exactly one of --model DIR (a save_pretrained folder) and --preset NAME")
    if args.model:
        from ..training.handoff import model_folder

        folder = model_folder(existing_folder(args.model))  # a pipeline stage folder's model/
        return DSVLModel.from_pretrained(folder), str(folder)
    if args.foundation:
        from ..foundation import from_foundation

        return from_foundation(args.preset), f"{args.preset} (foundation weights, fresh aligner)"
    import torch

    torch.manual_seed(0)
    return DSVLModel.from_name(args.preset), f"{args.preset} (random weights, seed 0)"


@subcommand(
    "trace", "capture attention (LLM, SigLIP, SAM) on one task image and save it as a trace file",
    example="dsvl-lab trace --preset dsvl-tiny-hybrid --foundation --family chart --out chart.safetensors\n"
            "dsvl-lab trace --model runs/demo/stage3_sft --family ocr --components llm,sam --layers sam:1,llm:-1 "
            "--out ocr.safetensors --html ocr.html\n"
            "dsvl-lab trace --preset dsvl-micro-hybrid --family scene --heads 0 --answer generate "
            "--out micro.safetensors",
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
        arg("--seed", type=whole_number(0), default=None,
            help="sample seed (default: the first held-out evaluation seed)"),
        arg("--prompt", default=None, help="the question (default: the sample's signature question)"),
        arg("--answer", default="reference",
            help="'reference' (the sample's answer, default), 'generate' (the model's own) or any text"),
        arg("--components", default=None, help="comma list of llm, siglip, sam (default: all the model has)"),
        arg("--layers", default=None, help="'0,3', '-1' (every component) or 'sam:1,llm:-1' (default: all layers)"),
        arg("--heads", default=None, help="comma list of head indexes to keep (default: all)"),
        arg("--budget-gb", type=real_number(0, low_open=True), default=2.0,
            help="refuse captures needing more memory (default 2)"),
        arg("--label", default=None, help="a name shown in the explorer (default: the model)"),
        arg("--out", required=True, help="the trace file to write (.safetensors)"),
        arg("--html", default=None, help="also write a self-contained HTML page with the figures"),
    ],
)
def cmd_trace(args) -> int:
    from ..inspection.attention_trace import trace_task

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
