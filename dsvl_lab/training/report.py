"""The pipeline's report: ``report.json`` for code, ``report.md`` for people, after every stage.

The table has one row per stage: the multimodal option accuracy per family at coarse and fine
detail (chance beside it: 1 / number of options, averaged over the questions), exact-match of the
greedy answer, held-out text perplexity and cloze accuracy (language retention).
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import write_json_atomic, write_text_atomic
from ..data.tasks import FAMILIES  # the table's columns, in the data world's order


def cell(evaluation: dict | None, family: str, detail: str, metric: str = "option_accuracy") -> str:
    score = ((evaluation or {}).get("vl") or {}).get(f"{family}/{detail}")
    return "-" if score is None else f"{score[metric]:.2f}"


def chance_row(stages: list[dict], detail: str) -> list[str]:
    for stage in stages:
        vl = (stage.get("evaluation") or {}).get("vl") or {}
        if vl:
            return [f"{vl[f'{f}/{detail}']['chance']:.2f}" if f"{f}/{detail}" in vl else "-" for f in FAMILIES]
    return ["-"] * len(FAMILIES)


def language_cells(evaluation: dict | None) -> list[str]:
    language = (evaluation or {}).get("language")
    if not language:
        return ["-", "-"]
    return [f"{language['perplexity']:.1f}", f"{language['cloze_accuracy']:.2f}"]


def table(stages: list[dict], detail: str, metric: str) -> list[str]:
    header = ["stage", *FAMILIES] + (["text ppl", "cloze"] if metric == "option_accuracy" else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in stages:
        row = [stage["name"], *(cell(stage.get("evaluation"), f, detail, metric) for f in FAMILIES)]
        if metric == "option_accuracy":
            row += language_cells(stage.get("evaluation"))
        lines.append("| " + " | ".join(row) + " |")
    if metric == "option_accuracy":
        lines.append("| chance | " + " | ".join(chance_row(stages, detail)) + " | | 0.25 |")
    return lines


def markdown(report: dict) -> str:
    stages = report["stages"]
    n = next((s["evaluation"]["vl"] for s in stages if (s.get("evaluation") or {}).get("vl")), {})
    n_items = next(iter(n.values()), {}).get("n", "?")
    lines = [f"# Pipeline report: {report['preset']}"
             f"{' (smoke: a few steps, not meaningful)' if report['smoke'] else ''}",
             "",
             f"Held-out questions ({n_items} per family and detail, evaluation seeds never drawn in training), "
             "scored by option likelihood (the paper's multiple-choice PPL): accuracy, with chance beside it. "
             "Language retention: held-out text perplexity (lower is better) and word-cloze accuracy (chance 0.25).",
             "", "## Coarse detail: option accuracy", "", *table(stages, "coarse", "option_accuracy"),
             "", "## Fine detail: option accuracy", "", *table(stages, "fine", "option_accuracy"),
             "", "## Exact match of the greedy answer (coarse)", "", *table(stages, "coarse", "exact_match"),
             "", "## Stages", "",
             "| stage | steps | time (s) | precision | samples/s | MFU | trains | lr | language ratio "
             "| frozen unchanged |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in stages:
        speed = s.get("throughput") or {}
        rate = f"{speed['samples_per_sec']:.1f}" if "samples_per_sec" in speed else "-"
        mfu = f"{speed['mfu']:.2f}" if "mfu" in speed else "-"
        precision = s.get("precision") or "-"  # reports written before it was recorded have none
        lines.append(f"| {s['name']} | {s['steps']} | {s['seconds']} | {precision} | {rate} | {mfu} | "
                     f"{', '.join(s['trainable'])} | "
                     f"{learning_rates(s)} | {s['language_ratio']} | {s['frozen_unchanged']} |")
    lines += ["", "MFU: FLOPs of a step (the analytic count of dsvl_lab.metrics.flops, per modality) per second, "
                  "over the device's peak (on a CPU: a matmul in the stage's precision, bf16 or fp32, "
                  "measured at its start)."]
    return "\n".join(lines) + "\n"


def learning_rates(stage: dict) -> str:
    """The stage's peak rate, then any group's own: ``0.0005 (vision_model.low 5e-05)``."""
    groups = (stage.get("spec") or {}).get("group_learning_rates") or {}
    own = ", ".join(f"{group} {rate:g}" for group, rate in groups.items())
    return f"{stage['learning_rate']:g}" + (f" ({own})" if own else "")


def write_report(out: str | Path, report: dict) -> None:
    out = Path(out)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown(report))
