"""SweepExplorer: browse a study's committed results with stock ipywidgets (no run folders needed).

Same rules as the attention explorer: Python keeps the state, every control change redraws a
matplotlib figure into a fixed-size ``ipywidgets.Image``, no custom JavaScript.

    from dsvl_lab.ablations.explorer import SweepExplorer
    SweepExplorer("ablations")                 # every study under ablations/ with a results.csv
    SweepExplorer("ablations/encoder")         # one study

Controls: study, stage (whose output was evaluated), detail (coarse / fine option accuracy, or
the other metrics) and family (all, one family, or the mean over families). Below the picture, the
per-seed table: every seed's value, the mean with its 95% interval, and the paired difference
against the baseline with its verdict.
"""
from __future__ import annotations

import html
import io
import math
from pathlib import Path

import ipywidgets as widgets

from ..inspection.static_picture import StaticPicture
from .aggregate import fmt
from .plots import draw_intervals, read_results_csv

FIGURE_INCHES = (7.5, 3.6)
DPI = 100
ALL = "all families"


def find_studies(path: str | Path) -> dict[str, Path]:
    """``{study name: results.csv}`` for a study folder or a folder of study folders."""
    path = Path(path)
    if (path / "results.csv").is_file():
        return {path.name: path / "results.csv"}
    found = {csv.parent.name: csv for csv in sorted(path.glob("*/results.csv"))}
    if not found:
        raise FileNotFoundError(f"no results.csv under {path}: run `dsvl-lab aggregate runs/sweeps/<study> "
                                f"--into ablations/<study>` first, or point at ablations/<study>")
    return found


class SweepExplorer(StaticPicture, widgets.VBox):
    """Pick study, stage, detail and family; see the interval plot and the per-seed table."""

    def __init__(self, path: str | Path = "ablations") -> None:
        self.studies = find_studies(path)
        self.rows: list[dict] = []
        style = {"description_width": "initial"}
        self.study = widgets.Dropdown(options=list(self.studies), description="study", style=style)
        self.stage = widgets.Dropdown(description="stage", style=style)
        self.detail = widgets.Dropdown(description="detail", style=style)
        self.family = widgets.Dropdown(description="family", style=style)
        width, height = round(FIGURE_INCHES[0] * DPI), round(FIGURE_INCHES[1] * DPI)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{width}px", height=f"{height}px"))
        self.table = widgets.HTML()
        self._quiet = False
        self._load_study()
        for control in (self.study, self.stage, self.detail, self.family):
            control.observe(self._changed, names="value")
        super().__init__([widgets.HBox([self.study, self.stage, self.detail, self.family]), self.image, self.table])
        self.render()

    # ------------------------------------------------------------------ options
    def _load_study(self) -> None:
        self.rows = read_results_csv(self.studies[self.study.value])
        self._quiet = True
        stages = list(dict.fromkeys(r["stage"] for r in self.rows))
        set_options(self.stage, stages, stages[-1])  # the runs' end point first (earlier stages: their curves)
        self._fill_details()
        self._quiet = False

    def _fill_details(self) -> None:
        """The detail levels the stage's metrics have (fine, coarse, other), then its families."""
        stage_metrics = [r["metric"] for r in self.rows if r["stage"] == self.stage.value]
        set_options(self.detail, [d for d in ("fine", "coarse") if any(m.endswith("/" + d) for m in stage_metrics)]
                    + (["other"] if any(self.is_other(m) for m in stage_metrics) else []))
        self._fill_families()

    def _fill_families(self) -> None:
        metrics = self.metric_names(all_families=True)
        set_options(self.family, [ALL] + [m.split("/")[0] for m in metrics] if self.detail.value != "other"
                    else ["all metrics"] + metrics)

    @staticmethod
    def is_other(metric: str) -> bool:
        return not (metric.endswith("/coarse") or metric.endswith("/fine"))

    def metric_names(self, all_families: bool = False) -> list[str]:
        """The metrics the controls select, in the order of the results table."""
        stage_rows = [r for r in self.rows if r["stage"] == self.stage.value]
        detail = self.detail.value
        metrics = list(dict.fromkeys(r["metric"] for r in stage_rows if
                                     (self.is_other(r["metric"]) if detail == "other"
                                      else r["metric"].endswith("/" + detail))))
        if all_families or self.family.value in (ALL, "all metrics", None):
            return metrics
        if detail == "other":
            return [self.family.value]
        return [m for m in metrics if m.split("/")[0] == self.family.value]

    def _changed(self, change) -> None:
        if self._quiet:
            return
        if change["owner"] is self.study:
            self._load_study()
        elif change["owner"] is self.stage:
            self._quiet = True
            self._fill_details()
            self._quiet = False
        elif change["owner"] is self.detail:
            self._quiet = True
            self._fill_families()
            self._quiet = False
        self.render()

    # ------------------------------------------------------------------ drawing
    @property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(r["arm"] for r in self.rows))

    def selected_rows(self) -> list[dict]:
        metrics = set(self.metric_names())
        return [r for r in self.rows if r["stage"] == self.stage.value and r["metric"] in metrics]

    def render(self) -> None:
        import matplotlib.pyplot as plt

        rows, metrics = self.selected_rows(), self.metric_names()
        figure, ax = plt.subplots(figsize=FIGURE_INCHES, dpi=DPI)
        draw_intervals(ax, rows, metrics, self.arms, labels=[m.split("/")[0] for m in metrics])
        if self.detail.value in ("coarse", "fine"):
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("option accuracy")
        ax.legend(fontsize=8, frameon=False, loc="lower left")
        ax.set_title(f"{self.study.value}, after {self.stage.value}, {self.detail.value}: seeds (dots), "
                     f"mean and 95% CI", fontsize=9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
        plt.close(figure)
        self.image.value = buffer.getvalue()
        self.table.value = seed_table(rows)


def set_options(dropdown: widgets.Dropdown, options: list[str], value: str | None = None) -> None:
    """New options and a value among them (the first unless given)."""
    dropdown.options = options
    dropdown.value = value if value is not None else (options[0] if options else None)


def seed_table(rows: list[dict]) -> str:
    """An HTML table: one row per (metric, arm), a column per seed, mean [CI], paired difference, verdict."""
    seeds = sorted({s for r in rows for s in r["seeds"]})
    head = "".join(f"<th>seed {s}</th>" for s in seeds)
    lines = ["<table style='font-size:12px;border-collapse:collapse'>",
             f"<tr><th>metric</th><th>arm</th>{head}<th>mean [95% CI]</th><th>minus baseline [95% CI]</th>"
             f"<th>verdict</th></tr>"]
    for r in rows:
        values = dict(zip(r["seeds"], r["values"]))
        cells = "".join(f"<td>{fmt(values.get(s))}</td>" for s in seeds)
        diff = "" if math.isnan(r["diff_mean"]) else \
            f"{fmt(r['diff_mean'])} [{fmt(r['diff_ci_low'])}, {fmt(r['diff_ci_high'])}]"
        lines.append(f"<tr><td>{html.escape(r['metric'])}</td><td>{html.escape(r['arm'])}</td>{cells}"
                     f"<td>{fmt(r['mean'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]</td>"
                     f"<td>{diff}</td><td>{html.escape(r['verdict'])}</td></tr>")
    return "\n".join(lines + ["</table>"])
