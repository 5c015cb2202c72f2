"""Memory while a stage streams a user source of 100,000 lines: flat, against reading the file whole.

Two LLaVA-format JSONL files of ``--lines`` rows each (``--lines / 10`` for the small one, the
reference for "flat") are written to a temporary folder, every row a distinct conversation about
one of the shipped photos (``data_samples/photos``). Then, in this one process:

1. **streaming** (``stage.data.sources``, what a stage does): index the file (``rows.jsonl_rows``)
   and build ``--batches`` training batches of the micro preset through ``StageBatches``, each
   sample a row drawn uniformly from the whole file, its image decoded when drawn. The resident
   memory (``VmRSS`` from ``/proc/self/status``) is read after indexing and after every tenth of
   the batches: **flat** means the last reading is within ``--flat-mb`` of the first one after
   warm-up (the index is built once; nothing grows with rows read);
2. **the index's cost**: the same for the small file: the large file's index may cost more (8
   bytes per row and array, 2.4 MB for 100,000 rows), nothing else may;
3. **the reference**: the whole large file parsed into a list (what a naive reader does), its
   resident growth measured last, in the same process.

The same is measured for a language-only source of ``--lines`` JSONL text rows, packed into
stage-2 sequences (``large_text``).

Targets: growth while streaming <= ``--flat-mb`` (default 8 MB), and the large file's total
streaming growth <= 0.25 of the naive reader's. Prints one JSON line, writes
``benchmarks/results/<name>.json`` (atomically) and exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.config import DSVLConfig
from dsvl_lab.data.sources.convert import read_sample_rows, to_llava
from dsvl_lab.data.stage_data import StageBatches, StageData
from dsvl_lab.processor import DSVLProcessor

RESULTS = Path(__file__).resolve().parent / "results"
PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"


def resident_mb() -> float:
    """This process's resident set size in MB (Linux: VmRSS in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark reads Linux's memory counters)")


def write_source(folder: Path, lines: int) -> Path:
    """``lines`` LLaVA rows cycling through the photos, each with its own text (so no two rows are equal)."""
    photos = [to_llava(row, index) for index, row in enumerate(read_sample_rows(PHOTOS / "photos.jsonl"))]
    path = folder / f"rows-{lines}.jsonl"
    with path.open("w") as file:
        for index in range(lines):
            row = dict(photos[index % len(photos)])
            row["id"] = f"row-{index}"
            row["conversations"] = [dict(turn) for turn in row["conversations"]]
            row["conversations"][-1]["value"] += f" (row {index})"
            file.write(json.dumps(row) + "\n")
    return path


def write_text_source(folder: Path, lines: int) -> Path:
    """``lines`` JSONL text rows: the corpus' training documents, cycled, each marked with its row."""
    from dsvl_lab.data.corpus import train_texts

    texts = train_texts()
    path = folder / f"text-{lines}.jsonl"
    with path.open("w") as file:
        for index in range(lines):
            file.write(json.dumps({"text": f"{texts[index % len(texts)]} (row {index})"}) + "\n")
    return path


def stream(path: Path, processor: DSVLProcessor, batches: int, batch_size: int, kind: str = "llava") -> dict:
    """Index ``path`` and build ``batches`` batches; resident MB after indexing and at each tenth.

    ``kind="llava"``: stage-3 conversations with their images; ``"text"``: stage-2 text packed to 256 tokens.
    """
    gc.collect()
    before = resident_mb()
    source = {"kind": kind, "path": str(path), "name": "rows"}
    if kind == "text":
        data = StageData(name="stage2_joint", language_ratio=1.0, batch_size=batch_size, seq_len=256,
                         sources=[source])
    else:
        data = StageData(name="stage3_sft", language_ratio=0.0, batch_size=batch_size, seq_len=512, sources=[source])
    source = StageBatches(data, processor, None, batches)
    indexed = resident_mb()
    readings = []
    for step in range(batches):
        source[step]
        if (step + 1) % max(1, batches // 10) == 0:
            gc.collect()
            readings.append(round(resident_mb(), 1))
    warm = readings[1] if len(readings) > 1 else readings[0]  # after the first tenth: allocator and caches warm
    return {"rows": len(source.mixture.sources[0].rows), "file_mb": round(path.stat().st_size / 2**20, 1),
            "before_mb": round(before, 1), "indexed_mb": round(indexed, 1), "readings_mb": readings,
            "index_mb": round(indexed - before, 1), "growth_after_warm_up_mb": round(readings[-1] - warm, 1),
            "total_growth_mb": round(readings[-1] - before, 1),
            "samples_read": batches * batch_size}


def read_whole(path: Path) -> float:
    """Resident growth (MB) of parsing every line into a list: the naive reader."""
    gc.collect()
    before = resident_mb()
    rows = [json.loads(line) for line in path.open()]
    grown = resident_mb() - before
    del rows
    return round(grown, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: .venv/bin/python benchmarks/bench_streaming_memory.py "
                                            "--lines 100000 --batches 200")
    parser.add_argument("--lines", type=int, default=100_000, help="rows of the large file (default 100,000)")
    parser.add_argument("--batches", type=int, default=200, help="batches built per file (default 200)")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per batch (default 16)")
    parser.add_argument("--flat-mb", type=float, default=8.0, help="allowed growth after warm-up (default 8 MB)")
    parser.add_argument("--name", default="bench_streaming_memory", help="results file name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    processor = DSVLProcessor.from_config(DSVLConfig.from_name("dsvl-micro-hybrid"))
    folder = Path(tempfile.mkdtemp(prefix="streaming-bench-"))
    try:
        shutil.copytree(PHOTOS / "images", folder / "images")
        small, large = write_source(folder, args.lines // 10), write_source(folder, args.lines)
        streamed_small = stream(small, processor, args.batches, args.batch_size)
        streamed_large = stream(large, processor, args.batches, args.batch_size)
        streamed_text = stream(write_text_source(folder, args.lines), processor, args.batches, args.batch_size,
                               kind="text")
        naive = read_whole(large)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    flat = max(streamed_large["growth_after_warm_up_mb"], streamed_text["growth_after_warm_up_mb"]) <= args.flat_mb
    ratio = streamed_large["total_growth_mb"] / naive if naive > 0 else float("nan")
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "python": platform.python_version(), "torch": torch.__version__},
              "small": streamed_small, "large": streamed_large, "large_text": streamed_text,
              "naive_reader_growth_mb": naive,
              "streaming_over_naive": round(ratio, 3),
              "targets": {"flat": flat, "streaming_over_naive <= 0.25": ratio <= 0.25}}
    write_json_atomic(RESULTS / f"{args.name}.json", report)
    print(json.dumps(report))
    return 0 if flat and ratio <= 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())
