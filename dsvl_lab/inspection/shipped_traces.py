"""The attention traces shipped in ``data_samples/traces/``: instructor mode, no model needed.

One command makes them, from the foundation model or from the pipeline's trained stages::

    python -m dsvl_lab.inspection.shipped_traces                   # foundation=foundation:dsvl-tiny-hybrid
    python -m dsvl_lab.inspection.shipped_traces stage1=runs/demo/stage1_adaptor stage3=runs/demo/stage3_sft

Each ``LABEL=SOURCE`` writes ``<LABEL>-<family>.safetensors`` and ``<LABEL>-<family>.html`` for the
same held-out sample (a fine chart, its signature question, the reference answer traced by teacher
forcing so that every trace lines up token for token and ``explorer.compare`` matches them), and
the folder's README table is rewritten from the traces found there. SOURCE is a folder written by
``DSVLModel.save_pretrained`` (or a pipeline stage folder holding ``model/``), or
``foundation:<preset>`` for :func:`dsvl_lab.foundation.from_foundation`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..atomic import write_text_atomic
from ..foundation import from_foundation
from ..model import DSVLModel
from ..training.handoff import model_folder
from .attention_trace import AttentionTrace, trace_task

TRACES_DIR = Path(__file__).resolve().parents[2] / "data_samples" / "traces"
DEFAULT_SOURCES = {"foundation": "foundation:dsvl-tiny-hybrid"}
SAMPLE = dict(family="chart", detail="fine")  # the hatched-bar question: the answer is a small region
COMMAND = "python -m dsvl_lab.inspection.shipped_traces"


def load_source(source: str):
    """A model from ``foundation:<preset>`` or a saved folder (a stage folder's ``model/`` is used)."""
    if source.startswith("foundation:"):
        # The foundation model's aligner is freshly initialised: a fixed seed makes the shipped
        # foundation trace the same file on every run (it was not, before 2026-11-29).
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return from_foundation(source.split(":", 1)[1])
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder {folder}; run the pipeline first (see README, training stages)")
    return DSVLModel.from_pretrained(model_folder(folder))


def make_shipped_traces(sources: dict[str, str] | None = None, out_dir: str | Path = TRACES_DIR,
                        seed: int | None = None) -> list[Path]:
    """Trace each ``{label: source}`` on the shipped sample; write the trace, its HTML page and the README."""
    out_dir = Path(out_dir)
    written = []
    for label, source in (sources or DEFAULT_SOURCES).items():
        model = load_source(source)
        trace = trace_task(model, seed=seed, answer="reference", meta={"label": label, "source": source},
                           **SAMPLE)
        path = trace.save(out_dir / f"{label}-{SAMPLE['family']}.safetensors")
        trace.to_html(path.with_suffix(".html"))
        written.append(path)
    write_readme(out_dir)
    return written


def write_readme(out_dir: Path) -> Path:
    """The folder's README: how the traces were made and one table row per trace file found there."""
    rows, files = [], sorted(out_dir.glob("*.safetensors"))
    for path in files:
        trace = AttentionTrace.load(path)
        meta = trace.meta
        rows.append(f"| `{path.name}` | {meta.get('source', '')} | {meta.get('family')} / {meta.get('detail')}, "
                    f"seed {meta.get('seed')} | {meta.get('prompt')} | {meta.get('answer')} | "
                    f"{', '.join(trace.layers())} | {path.stat().st_size / 1e6:.2f} MB |")
    example_file = files[0].name if files else "foundation-chart.safetensors"
    text = f"""# Shipped attention traces

Attention of the miniature models on one held-out task sample, captured from every LLM, SigLIP and
SAM layer (all heads, fp16), so that the attention explorer works at once with no model
(instructor mode). Each `.safetensors` file is one `AttentionTrace`; the `.html` beside it is a
self-contained page with its static figures, for readers without a kernel.

```python
from dsvl_lab.inspection import AttentionExplorer
explorer = AttentionExplorer.from_trace("data_samples/traces/{example_file}")
explorer                              # in a notebook cell
explorer.compare("data_samples/traces/<other>.safetensors")   # side by side
```

Made by `{COMMAND}` (the foundation model: pretrained LLM, SigLIP and SAM with a fresh, untrained
aligner). From the pipeline's trained stages:

```bash
{COMMAND} stage1=runs/demo/stage1_adaptor stage3=runs/demo/stage3_sft
```

The answer is the sample's reference answer, traced by teacher forcing (the model's own greedy
answer is not what is traced), so traces of different models line up token for token.

| file | model | sample | prompt | answer | layers | size |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    return write_text_atomic(out_dir / "README.md", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", metavar="LABEL=SOURCE",
                        help="e.g. stage3=runs/demo/stage3_sft or foundation=foundation:dsvl-tiny-hybrid")
    parser.add_argument("--out", default=str(TRACES_DIR), help=f"folder (default {TRACES_DIR})")
    args = parser.parse_args(argv)
    bad = [s for s in args.sources if "=" not in s]
    if bad:
        parser.error(f"write each source as LABEL=SOURCE, e.g. stage3=runs/demo/stage3_sft (got {bad})")
    sources = dict(s.split("=", 1) for s in args.sources) or None
    for path in make_shipped_traces(sources, args.out):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.html').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
