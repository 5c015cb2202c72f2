"""Does a study's conclusion at one size hold at the next? The transfer table of the scaling study.

DeepSeek-VL made its design decisions at 1.3B and carried them to 7B (paper section 3.2.2); the
workbench's version of that question (RQ4) repeats a tiny study at the small presets with the same
recipe, seeds and claims (``ablations/scaling/``). This module reads both studies' committed
``results.csv`` and ``sweep.yaml`` and sets each claim's paired interval at one size beside the
other's:

- **transfers**: the small study reaches the tiny study's decisive verdict (supported at both, or
  refuted at both);
- **does not transfer**: the small study reaches the opposite decisive verdict;
- **inconclusive at n=3** (or whatever n): the tiny verdict was decisive, the small interval is not;
- **nothing to transfer**: the tiny study itself was inconclusive; the small verdict is still shown.

Only committed files are read, so ``dsvl-lab transfer`` rewrites the same bytes from them.
"""
from __future__ import annotations

import csv
import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text_atomic
from .aggregate import Interval, claim_difference, fmt, mean_ci, verdict
from .spec import Claim, SweepSpec

DECISIVE = ("supported", "refuted")


def read_results_csv(path: Path) -> list[dict]:
    """The summary rows of ``aggregate``'s results.csv, as ``claim_difference`` reads them (the paired
    difference from the baseline as an Interval; its SD is not in the file and not needed)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            diff = None
            if row["diff_mean"]:
                diff = Interval(int(row["n"]), float(row["diff_mean"]), math.nan,
                                float(row["diff_ci_low"] or "nan"), float(row["diff_ci_high"] or "nan"))
            rows.append({"stage": row["stage"], "metric": row["metric"], "arm": row["arm"],
                         "seeds": [int(s) for s in row["seeds"].split(";") if s],
                         "values": [float(v) for v in row["values"].split(";") if v], "diff": diff})
    return rows


@dataclass
class Study:
    """A committed study: its YAML and its results, from the folder ``aggregate --into`` wrote."""

    folder: Path
    spec: SweepSpec
    rows: list[dict]

    @classmethod
    def load(cls, folder: str | Path) -> "Study":
        folder = Path(folder)
        for name in ("sweep.yaml", "results.csv"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} is missing: pass a committed study's folder (its sweep.yaml "
                                        f"beside the results.csv that `dsvl-lab aggregate --into` wrote)")
        return cls(folder, SweepSpec.load(folder / "sweep.yaml"), read_results_csv(folder / "results.csv"))

    def claim_interval(self, claim: Claim) -> tuple[Interval | None, str]:
        diff = claim_difference(self.rows, claim)
        return diff, verdict(diff, claim.direction, claim.margin) if diff else "no results"


@dataclass
class Transfer:
    claim: Claim
    smaller: tuple[Interval | None, str]  # (paired interval, verdict) at the smaller size
    larger: tuple[Interval | None, str]

    @property
    def word(self) -> str:
        before, after = self.smaller[1], self.larger[1]
        if before not in DECISIVE:
            return f"nothing to transfer ({before} before)"
        if after == before:
            return "transfers"
        return "does not transfer" if after in DECISIVE else after


def same_claim(one: Claim, other: Claim) -> bool:
    """The same test: arm, metric, stage, direction, margin and comparison (the text may differ)."""
    keys = ("arm", "metric", "stage", "direction", "margin", "against")
    return all(getattr(one, key) == getattr(other, key) for key in keys)


def transfers(smaller: Study, larger: Study) -> list[Transfer]:
    """Every claim of the larger study, with the same claim's interval and verdict in the smaller one."""
    found = []
    for claim in larger.spec.claims:
        twin = next((c for c in smaller.spec.claims if same_claim(c, claim)), None)
        if twin is None:
            raise ValueError(f"{larger.folder}: the claim {claim.text or claim.metric!r} is not among the claims of "
                             f"{smaller.folder / 'sweep.yaml'}; a transfer compares the same test at two sizes")
        found.append(Transfer(claim, smaller.claim_interval(twin), larger.claim_interval(claim)))
    return found


def all_transfers(pairs: list[tuple[Study, Study]]) -> list[tuple[Study, Study, Transfer]]:
    """Every pair's transfers, in order, each with its two studies: the rows of the table, CSV and plot."""
    return [(smaller, larger, item) for smaller, larger in pairs for item in transfers(smaller, larger)]


def interval_text(diff: Interval | None) -> str:
    return mean_ci(diff.mean, diff.low, diff.high) if diff else ""


def transfer_md(pairs: list[tuple[Study, Study]], command: str) -> str:
    lines = ["# Transfer: does a conclusion at one size hold at the next?", "",
             f"Written by `{command}` from the committed studies' results.csv and sweep.yaml. Each claim's "
             f"paired difference (arm - baseline, same seed) is a mean over seeds with its 95% Student-t "
             f"interval, at both sizes.", "",
             "| claim | smaller: study | smaller: difference | verdict | larger: study | larger: difference | verdict "
             "| transfer |", "|---|---|---|---|---|---|---|---|"]
    for smaller, larger, item in all_transfers(pairs):
        margin = f" (margin {item.claim.margin:g})" if item.claim.margin else ""
        lines.append(f"| {item.claim.text or item.claim.metric}{margin} | `{smaller.spec.study}` | "
                     f"{interval_text(item.smaller[0])} | {item.smaller[1]} | `{larger.spec.study}` | "
                     f"{interval_text(item.larger[0])} | {item.larger[1]} | **{item.word}** |")
    return "\n".join(lines) + "\n"


def transfer_csv(pairs: list[tuple[Study, Study]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["claim", "arm", "metric", "stage", "smaller", "smaller_mean", "smaller_low", "smaller_high",
                     "smaller_verdict", "larger", "larger_mean", "larger_low", "larger_high", "larger_verdict",
                     "transfer"])
    for smaller, larger, item in all_transfers(pairs):
        cells = []
        for diff, word in (item.smaller, item.larger):
            cells.append([fmt(diff.mean, 4) if diff else "", fmt(diff.low, 4) if diff else "",
                          fmt(diff.high, 4) if diff else "", word])
        writer.writerow([item.claim.text, item.claim.arm, item.claim.metric, item.claim.stage,
                         smaller.spec.study, *cells[0], larger.spec.study, *cells[1], item.word])
    return buffer.getvalue()


def plot_transfer(pairs: list[tuple[Study, Study]]):
    """Each claim's paired interval at both sizes, in the claimed direction (right = as claimed), with the
    margin a claim must clear; one row per claim."""
    import matplotlib.pyplot as plt

    items = all_transfers(pairs)
    figure, axes = plt.subplots(len(items), 1, figsize=(8, 1.15 * len(items) + 0.6), squeeze=False)
    for axis, (smaller, larger, item) in zip(axes[:, 0], items):
        sign = 1 if item.claim.direction == "greater" else -1
        for row, (study, (diff, word)) in enumerate(((smaller, item.smaller), (larger, item.larger))):
            if diff is None:
                continue
            low, high = sorted((sign * diff.low, sign * diff.high))
            colour = {"supported": "tab:green", "refuted": "tab:red"}.get(word, "tab:grey")
            axis.errorbar(sign * diff.mean, row, xerr=[[sign * diff.mean - low], [high - sign * diff.mean]],
                          fmt="o", color=colour, capsize=4)
        axis.axvline(-item.claim.margin, color="black", linewidth=1)
        axis.set_yticks([0, 1], [smaller.spec.study, larger.spec.study], fontsize=8)
        axis.set_ylim(-0.6, 1.6)
        title = textwrap.shorten(item.claim.text or item.claim.metric, 90, placeholder="...")
        axis.set_title(f"{title}: {item.word}", fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("paired difference in the claimed direction (95% CI; right of the line = as claimed)")
    figure.tight_layout()
    return figure


def write_transfer(folders: list[str | Path], into: str | Path, command: str | None = None) -> list[Path]:
    """``folders`` = smaller, larger[, smaller, larger ...]: write transfer.md and transfer.csv into ``into``."""
    if not folders or len(folders) % 2:
        raise ValueError(f"pass study folders in pairs, smaller then larger (got {len(folders)})")
    studies = [Study.load(folder) for folder in folders]
    pairs = list(zip(studies[::2], studies[1::2]))
    command = command or "dsvl-lab transfer " + " ".join(str(f) for f in folders) + f" --into {into}"
    into = Path(into)
    return [write_text_atomic(into / "transfer.md", transfer_md(pairs, command)),
            write_text_atomic(into / "transfer.csv", transfer_csv(pairs))]
