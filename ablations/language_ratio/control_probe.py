"""The control measurement of the language-ratio study: one stage-2 run from a stage-1 checkpoint, then
the held-out language measure (``dsvl_lab.data.lm_eval.language_retention``). README.md's first table.

    python ablations/language_ratio/control_probe.py --name text-fresh --language-ratio 1.0 --text-source fresh \\
        --llm-lr 2e-4 --warmup 0

Every row of ``control_probe.jsonl`` came from this script (2 torch threads, one run at a time), from
the stage-1 output of seed 0 (``stage1_adaptor-s0-e32425ea``, 50 steps: the encoder and language-ratio
studies' own). Stage 2 is the miniature recipe's with the options below changed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

START = "runs/sweeps/language_ratio/stages/stage1_adaptor-s0-e32425ea"
FOUNDATION_PERPLEXITY = 132.87  # the foundation LM's held-out perplexity (stage 1 leaves the LLM frozen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="run folder under --out and the row's name")
    parser.add_argument("--language-ratio", type=float, required=True, help="1.0 = 0:100 (pure text), 0.0 = 100:0")
    parser.add_argument("--text-source", default="fresh", choices=("corpus", "fresh"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--llm-lr", type=float, default=None, help="the LLM's own rate (default: the stage's 1e-3)")
    parser.add_argument("--warmup", type=int, default=0, help="modality warm-up steps (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--start", default=START, help="the stage-1 output folder")
    parser.add_argument("--out", default="runs/control_probe")
    parser.add_argument("--results", default="ablations/language_ratio/control_probe.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from dsvl_lab.data.lm_eval import language_retention
    from dsvl_lab.processor import DSVLProcessor
    from dsvl_lab.training.handoff import load_stage_output
    from dsvl_lab.training.run import run_stage
    from dsvl_lab.training.spec import stage_spec

    spec = stage_spec("stage2_joint")
    data = dataclasses.replace(spec.data, batch_size=args.batch, language_ratio=args.language_ratio,
                               text_source=args.text_source, seed=0, warmup_steps=args.warmup,
                               warmup_kind="linear" if args.warmup else "none")
    spec = dataclasses.replace(spec, data=data, steps=args.steps, language_every=25,
                               group_learning_rates={"language_model": args.llm_lr} if args.llm_lr else {})
    out = Path(args.out) / args.name
    started = time.perf_counter()
    run_stage("dsvl-tiny-hybrid", spec, out, start=args.start, progress=True, eval_samples=0, throughput=False,
              precision="32-true")
    train_seconds = time.perf_counter() - started
    model = load_stage_output(out, "stage2_joint", "dsvl-tiny-hybrid", receiving="evaluation").eval()
    with torch.no_grad():
        language = language_retention(model, DSVLProcessor.from_config(model.config))
    row = {"name": args.name, "ratio": args.language_ratio, "source": args.text_source, "steps": args.steps,
           "llm_lr": args.llm_lr, "train_s": round(train_seconds, 1), "ppl": round(language["perplexity"], 2),
           "cloze": round(language["cloze_accuracy"], 3), "warm": args.warmup, "batch": args.batch,
           "rise_pct": round(100 * (language["perplexity"] / FOUNDATION_PERPLEXITY - 1), 1)}
    print(json.dumps(row))
    with open(args.results, "a") as handle:
        handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
