"""A real stage-2 run mixing the procedural world, a LLaVA-format file and a text corpus: do the counts
it logs follow the declared shares (issue 19)?

The run: ``run_stage`` on ``dsvl-micro-hybrid`` (random start), stage 2, ``--steps`` steps of 16
samples (default 625: 10,000 samples), language share 0.7 after a 200-step linear warm-up; image
draws split world : photos = 1 : 2, the 36 shipped photos converted to LLaVA JSON (a tenth held
out), text from 500 documents of the corpus' train split as a ``text`` source. At the end it reads
the counts the ``MixtureLogger`` logged (``data/text_seen``, ``data/source/<name>``) and compares
them with what the schedule and the weights expect, and with ``planned_counts`` (the same choices,
computed without building a sample). Target: every count within 1 point of the expectation.

    .venv/bin/python benchmarks/mixture_run.py            # about 4 minutes alone on 2 cores
    .venv/bin/python benchmarks/mixture_run.py --steps 50 # quick

Prints one JSON line, writes ``benchmarks/results/mixture_run.json`` and exits 1 when a count misses.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from dsvl_lab.atomic import write_json_atomic
from dsvl_lab.data.corpus import train_texts
from dsvl_lab.data.sources.convert import convert
from dsvl_lab.data.stage_data import planned_counts
from dsvl_lab.training import run_stage, stage_spec

RESULTS = Path(__file__).resolve().parent / "results"
PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"


def sources_in(folder: Path) -> list[dict]:
    """The photos as LLaVA JSON and 500 corpus documents as a text source, written into ``folder``."""
    shutil.copytree(PHOTOS / "images", folder / "images")
    shutil.copy(PHOTOS / "photos.jsonl", folder / "photos.jsonl")
    convert(folder / "photos.jsonl", "llava", folder / "llava.json")
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in train_texts()[:500]))
    return [{"kind": "world", "weight": 1.0},
            {"kind": "llava", "path": str(folder / "llava.json"), "name": "photos", "weight": 2.0, "eval_share": 0.1},
            {"kind": "text", "path": str(folder / "corpus.jsonl"), "name": "corpus"}]


def logged_counts(run: Path) -> dict[str, float]:
    last: dict[str, str] = {}
    for row in csv.DictReader((run / "logs" / "metrics.csv").open()):
        last.update({key: value for key, value in row.items() if value})
    return {key: float(value) for key, value in last.items() if key.startswith("data/")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=625, help="steps of 16 samples (default 625: 10,000 samples)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="mixture-run-"))
    try:
        data = {"batch_size": 16, "seq_len": 256, "language_ratio": 0.7, "warmup_steps": 200,
                "warmup_kind": "linear", "families": ["chart", "scene"], "task_image_size": 64,
                "sources": sources_in(folder)}
        spec = stage_spec("stage2_joint", steps=args.steps).replace(starts_from="random", warmup_steps=10, data=data)
        start = time.time()
        L.seed_everything(0)
        run_stage("dsvl-micro-hybrid", spec, folder / "run", progress=False, eval_samples=0, language_eval=False,
                  throughput=False, num_workers=1, log_every_n_steps=1)
        seconds = time.time() - start
        logged = logged_counts(folder / "run")
        plan = planned_counts(spec.data, args.steps)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    samples = args.steps * 16
    names = {"text": "data/text_seen", "image": "data/image_seen", "world": "data/source/world",
             "photos": "data/source/photos", "corpus": "data/source/corpus"}
    rows = {key: {"logged": logged[name], "expected": round(plan["expected"][key], 1),
                  "planned": plan["drawn"][key],
                  "points_off": round(100 * (logged[name] - plan["expected"][key]) / samples, 3)}
            for key, name in names.items()}
    ok = all(abs(row["points_off"]) <= 1.0 for row in rows.values())
    report = {"steps": args.steps, "samples": samples, "seconds": round(seconds), "counts": rows,
              "bad_samples": logged.get("data/bad_samples"), "within_1_point": ok}
    write_json_atomic(RESULTS / "mixture_run.json", report)
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
