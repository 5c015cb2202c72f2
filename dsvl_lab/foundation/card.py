"""A part's model card: the JSON for code, the Markdown for people, and the index of shipped parts.

The card files are written and read by ``dsvl_lab.artifacts`` (``<part>.json`` and ``<part>.md``);
this module says what a foundation card holds and how it reads.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from ..artifacts import read_card
from ..atomic import write_text_atomic
from .recipe import FOUNDATION_DIR, PARTS, SIZES, FoundationError


def part_card(folder: Path, part: str) -> dict[str, Any]:
    """The model card of ``part`` in ``folder``; a missing one is refused with the command that makes it."""
    card = read_card(folder, part)
    if card is None:
        raise FoundationError(f"no model card {folder / f'{part}.json'}: make the part with `dsvl-lab pretrain {part} "
                              f"--preset dsvl-{folder.name}-hybrid --out runs/{part} --ship`")
    return card


class Stopwatch:
    """Wall time of the phases of a run (pool, training, evaluation), for the model card."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, phase: str):
        watch = self

        class _Phase:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.times[phase] = round(watch.times.get(phase, 0.0) + time.perf_counter() - self.start, 1)

        return _Phase()

    @property
    def total(self) -> float:
        return round(sum(self.times.values()), 1)


def machine_line() -> str:
    import platform

    return f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}"


def markdown_table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])


def card_markdown(card: dict[str, Any], what: str, quality_lines: list[str]) -> str:
    """The human model card: what it is, data, recipe, time, quality, files, how to reproduce."""
    recipe = card["recipe"]
    rows = [("preset size", card["size"]), ("parameters kept", f"{card['export']['parameters']:,}"),
            ("steps x batch", f"{recipe['steps']} x {recipe['batch_size']}"),
            ("peak lr / warm-up", f"{recipe['lr']} / {recipe['warmup_steps']} steps"),
            ("precision", recipe["precision"]), ("seed", str(recipe["seed"])),
            ("wall time", ", ".join(f"{k} {v:.0f} s" for k, v in card["wall_time_s"].items())
             + f" (total {card['wall_time_total_s'] / 60:.1f} min)"),
            ("machine", card["machine"]),
            ("file", f"`{card['export']['file']}` ({card['export']['bytes'] / 1e6:.1f} MB, {card['export']['dtype']})"),
            ("tensor sha256", f"`{card['export']['tensor_sha256']}`"),
            ("file sha256", f"`{card['export']['file_sha256']}`")]
    extra = "".join(f"| {k} | {v} |\n" for k, v in recipe.get("extra", {}).items())
    return (f"# {card['title']}\n\n{what}\n\n## Data\n{card['data']}\n\n## Recipe and cost\n"
            f"{markdown_table(rows)}\n{extra}\n## Quality (measured on the stored bf16 weights)\n"
            + "\n".join(f"- {line}" for line in quality_lines)
            + f"\n\n![learning curve]({card['part']}_curve.png)\n\n## Reproduce\n```\n{card['command']}\n```\n"
            f"A run stopped part-way resumes from `OUT/checkpoints/last.ckpt` when the same command is run again.\n")


def headline(card: dict[str, Any]) -> str:
    """The card's quality figure in one line, for the index table."""
    f = card["figures"]
    if card["part"] == "lm":
        return (f"perplexity {f['perplexity']:.0f} vs unigram {f['unigram_perplexity']:.0f} "
                f"({f['unigram_ratio']:.1f}x); cloze {f['cloze_accuracy']:.2f} (chance {f['cloze_chance']:.2f})")
    if card["part"] == "siglip":
        return f"zero-shot retrieval top-1 {f['top1']:.2f} among 100 (chance 0.01)"
    return f"texture probe mIoU SAM {f['sam_miou']:.2f} vs SigLIP {f['siglip_miou']:.2f} ({f['ratio']:.1f}x)"


def write_index(root: Path = FOUNDATION_DIR) -> Path:
    """``root/README.md``: one row per shipped part, made from the cards (so it never goes stale)."""
    rows = []
    for size in SIZES:
        for part in PARTS:
            card = read_card(root / size, part)
            if card is not None:
                rows.append(f"| [{size}/{part}]({size}/{part}.md) | `{card['submodule']}` | "
                            f"{card['recipe']['steps']} x {card['recipe']['batch_size']} | "
                            f"{card['wall_time_total_s'] / 60:.1f} | {card['export']['bytes'] / 1e6:.1f} | "
                            f"{headline(card)} |")
    text = ("# Foundation weights of the miniature presets\n\n"
            "Made by `dsvl-lab pretrain lm|siglip|sam` on this repository's own data (see each model card for the "
            "data, recipe, learning curve and the command that reproduces it). Loaded by "
            "`DSVLModel.from_foundation(preset)`, which checks each file against the checksum in its card. "
            "Stored in bf16; every figure below was measured on the stored bf16 weights. This table is rewritten "
            "from the cards whenever a part is shipped.\n\n"
            "| part | fills | steps x batch | minutes (2-core CPU) | MB | quality |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    return write_text_atomic(root / "README.md", text)
