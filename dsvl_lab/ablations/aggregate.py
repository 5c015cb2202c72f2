"""From run folders to a study's tables and plots: means, Student-t intervals, paired differences, verdicts.

``dsvl-lab aggregate runs/sweeps/<study> --into ablations/<study>`` reads every run's
``result.json`` (only runs of the study's current plan: a result of an older spec is ignored) and
writes:

- ``results.csv``: one row per (stage, metric, arm): n seeds, mean, SD, 95% Student-t interval, the
  per-seed values, and against the baseline arm the paired per-seed differences' mean, 95% interval
  and whether it is higher, lower or inconclusive (claims get their verdicts in ``results.md``);
- ``results.md``: the same as tables, the claims with their verdicts, and the cost of the runs;
- ``<stage>-intervals.png`` (every seed a dot, the mean with its interval) and one
  ``curve-<stage>-<metric>.png`` per learning curve the YAML asks for (mean and +-1 SD band).

Statistics (3-5 seeds): the interval of a mean is ``mean +- t(0.975, n-1) * SD / sqrt(n)`` with the
t quantile from ``scipy.stats``; a paired comparison does the same on the per-seed differences
(arm minus baseline, the same seed meaning the same data, initialisation and questions). Verdicts:
"supported" when the interval excludes 0 (or the claim's margin) in the claimed direction,
"refuted" when it excludes it the other way, else "inconclusive at n seeds". Every output is a pure
function of the run folders, so running the command again rewrites the same bytes.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text_atomic
from ..data.tasks import FAMILIES
from .plots import arm_setting, curve_plots, interval_plots, trend_plots
from .runner import RESULT, plan_sweep, read_json
from .spec import Claim, Fraction, Measure, SweepSpec, Trend

CSV_COLUMNS = ("stage", "metric", "arm", "n", "mean", "sd", "ci_low", "ci_high", "seeds", "values", "baseline",
               "diff_mean", "diff_ci_low", "diff_ci_high", "verdict")


# ============================================================================ statistics
@dataclass
class Interval:
    n: int
    mean: float
    sd: float
    low: float
    high: float


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Mean, SD and the Student-t interval of the mean (nan bounds with fewer than 2 values)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return Interval(n, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def verdict(diff: Interval, direction: str = "greater", margin: float = 0.0) -> str:
    """'supported' / 'refuted' when the paired interval excludes the margin, else inconclusive."""
    if diff.n < 2 or math.isnan(diff.low):
        return f"inconclusive at n={diff.n}"
    sign = 1 if direction == "greater" else -1
    low, high = sorted((sign * diff.low, sign * diff.high))  # as if "greater"
    if low > -margin:
        return "supported"
    if high < -margin:
        return "refuted"
    return f"inconclusive at n={diff.n}"


def difference_word(diff: Interval) -> str:
    """For a metric no claim is about: 'higher' / 'lower' when the paired interval excludes 0."""
    word = verdict(diff, "greater")
    return {"supported": "higher", "refuted": "lower"}.get(word, word)


# ============================================================================ collecting
def load_results(root: Path) -> tuple[SweepSpec, list[dict], list[str]]:
    """The study's YAML (copied into the run root), its finished results, and the runs still missing."""
    spec = SweepSpec.load(root / "sweep.yaml")
    smoke = root.name.endswith("-smoke")
    plan = plan_sweep(spec, root.parent, smoke)
    results, missing = [], []
    for run in plan.runs:
        result = read_json(root / "runs" / run.name / RESULT)
        if result is not None and result.get("hash") == run.hash:
            results.append(result)
        else:
            missing.append(run.name)
    return spec, results, missing


def per_seed(results: list[dict], curves: list[str] = (), measures: list[Measure] = ()
             ) -> dict[tuple[str, str, str], dict[int, float]]:
    """{(stage, metric, arm): {seed: value}} for every metric that is not a chance level, plus, for each
    ``curves`` entry ``<stage>:<metric>``, the metric's mean over the last tenth of the stage (``end <metric>``),
    and each of the study's ``measures`` (a statistic of a curve, under the measure's name)."""
    table: dict[tuple[str, str, str], dict[int, float]] = {}
    for result in results:
        for measure in measures:
            value = measure_value(result, measure)
            if value is not None:
                table.setdefault((measure.stage, measure.name, result["arm"]), {})[result["seed"]] = value
    for result in results:
        for stage, metrics in result["metrics"].items():
            for metric, value in metrics.items():
                if not metric.endswith("/chance"):
                    table.setdefault((stage, metric, result["arm"]), {})[result["seed"]] = value
        for entry in curves:
            stage, _, metric = entry.partition(":")
            points = result["stages"].get(stage, {}).get("curves", {}).get(metric, [])
            if points:
                last = max(step for step, _ in points)
                tail = [value for step, value in points if step >= 0.9 * last]
                table.setdefault((stage, f"end {metric}", result["arm"]), {})[result["seed"]] = sum(tail) / len(tail)
    return table


def measure_value(result: dict, measure: Measure) -> float | None:
    """``measure.stat`` of the run's curve over ``measure.steps`` (None when the run logged no point there)."""
    stage, _, metric = measure.curve.partition(":")
    summary = result["stages"].get(stage, {})
    if measure.stat == "throughput":
        return summary["samples"] / summary["seconds"] if summary.get("samples") and summary.get("seconds") else None
    points = summary.get("curves", {}).get(metric, [])
    start = min(points)[1] if points else None  # the first logged point: the curve's start
    if measure.steps:
        first, last = measure.steps
        points = [(step, value) for step, value in points if first <= step <= last]
    if not points:
        return None
    values = [value for _, value in sorted(points)]
    return {"max": max, "min": min, "mean": lambda v: sum(v) / len(v), "last": lambda v: v[-1],
            "rise": lambda v: max(v) - start}[measure.stat](values)


def chance_levels(results: list[dict]) -> dict[tuple[str, str], float]:
    """Mean chance level per (stage, metric) over all runs (options differ per question)."""
    sums: dict[tuple[str, str], list[float]] = {}
    for result in results:
        for stage, metrics in result["metrics"].items():
            for metric, value in metrics.items():
                if metric.endswith("/chance"):
                    sums.setdefault((stage, metric.removesuffix("/chance")), []).append(value)
    levels = {key: sum(v) / len(v) for key, v in sums.items()}
    for stage in {s for s, _ in levels}:
        for detail in ("coarse", "fine"):
            cells = [v for (s, m), v in levels.items() if s == stage and m.endswith("/" + detail)]
            if cells:
                levels[(stage, f"mean/{detail}")] = sum(cells) / len(cells)
    return levels


def summary_rows(spec: SweepSpec, results: list[dict]) -> list[dict]:
    """One row per (stage, metric, arm), in the order stages, metrics and arms first appear."""
    table = per_seed(results, spec.curves, spec.measures)
    arms = list(spec.arms)
    keys = sorted({(stage, metric) for stage, metric, _ in table},
                  key=lambda k: (first_index(results, k[0]), metric_order(k[1])))
    rows = []
    for stage, metric in keys:
        base = table.get((stage, metric, spec.baseline), {})
        for arm in arms:
            values = table.get((stage, metric, arm))
            if not values:
                continue
            seeds = sorted(values)
            stats = t_interval([values[s] for s in seeds])
            row = {"stage": stage, "metric": metric, "arm": arm, "n": stats.n, "mean": stats.mean, "sd": stats.sd,
                   "ci_low": stats.low, "ci_high": stats.high, "seeds": seeds, "values": [values[s] for s in seeds],
                   "baseline": spec.baseline, "diff": None, "verdict": ""}
            paired = [s for s in seeds if s in base]
            if arm != spec.baseline and paired:
                diff = t_interval([values[s] - base[s] for s in paired])
                row["diff"] = diff
                row["verdict"] = difference_word(diff)
            rows.append(row)
    return rows


def first_index(results: list[dict], stage: str) -> int:
    """Stages in the order the runs train them."""
    for result in results:
        if stage in result["stages"]:
            return list(result["stages"]).index(stage)
    return 99


def metric_order(metric: str) -> tuple:
    """Coarse before fine, families in their order, means after them, language metrics last."""
    family, _, detail = metric.partition("/")
    if family in FAMILIES or family == "mean":
        rank = FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)
        return (0, 0 if detail.startswith("coarse") else 1, rank, detail)
    return (1, 0, 0, metric)


# ============================================================================ writing
def fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_ci(mean: float, low: float, high: float) -> str:
    """``0.660 [0.529, 0.791]``; the mean alone where one seed gives no interval."""
    return fmt(mean) if math.isnan(low) else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def results_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        diff = row["diff"]
        writer.writerow([row["stage"], row["metric"], row["arm"], row["n"], fmt(row["mean"], 4), fmt(row["sd"], 4),
                         fmt(row["ci_low"], 4), fmt(row["ci_high"], 4), ";".join(map(str, row["seeds"])),
                         ";".join(fmt(v, 4) for v in row["values"]), row["baseline"],
                         fmt(diff.mean if diff else None, 4), fmt(diff.low if diff else None, 4),
                         fmt(diff.high if diff else None, 4), row["verdict"]])
    return buffer.getvalue()


def claim_row(rows: list[dict], claim: Claim, arm: str) -> dict | None:
    """``arm``'s summary row for the claim's metric (at the claim's stage, else the last evaluated)."""
    matches = [r for r in rows if r["arm"] == arm and r["metric"] == claim.metric
               and (not claim.stage or r["stage"] == claim.stage)]
    return matches[-1] if matches else None


def claim_difference(rows: list[dict], claim: Claim) -> Interval | None:
    """The claim's paired interval: the row's difference from the baseline, or, for a claim
    ``against`` another arm, arm - that arm over the seeds both ran."""
    row = claim_row(rows, claim, claim.arm)
    if not claim.against:
        return row["diff"] if row else None
    other = claim_row(rows, claim, claim.against)
    if not (row and other):
        return None
    theirs = dict(zip(other["seeds"], other["values"]))
    paired = [value - theirs[seed] for seed, value in zip(row["seeds"], row["values"]) if seed in theirs]
    return t_interval(paired) if paired else None


def claim_verdicts(spec: SweepSpec, rows: list[dict]) -> list[tuple[Claim, Interval | None, str]]:
    """Each claim with its paired interval and the verdict in the claimed direction."""
    found = []
    for claim in spec.claims:
        diff = claim_difference(rows, claim)
        word = verdict(diff, claim.direction, claim.margin) if diff else "no runs yet"
        found.append((claim, diff, word))
    return found


def results_md(spec: SweepSpec, results: list[dict], rows: list[dict], missing: list[str], command: str) -> str:
    levels = chance_levels(results)
    arms = [a for a in spec.arms if any(r["arm"] == a for r in rows)]
    seeds = sorted({r["seed"] for r in results})
    lines = [f"# {spec.study}: results", "",
             f"Written by `{command}` from {len(results)} finished runs ({len(arms)} arms x seeds "
             f"{', '.join(map(str, seeds))}); every number is a mean over seeds with its 95% Student-t interval.",
             ""]
    if missing:
        lines += [f"Runs missing: {', '.join(missing)}.", ""]
    if spec.claims:
        lines += ["## Claims", "", "| claim | arm - baseline (paired, 95% CI) | verdict |", "|---|---|---|"]
        for claim, diff, word in claim_verdicts(spec, rows):
            what = claim.text or (f"{claim.arm} {claim.direction} than {claim.against or spec.baseline} "
                                  f"on {claim.metric}")
            cell = mean_ci(diff.mean, diff.low, diff.high) if diff else "-"
            margin = f" (margin {claim.margin:g})" if claim.margin else ""
            against = f" ({claim.arm} - {claim.against}, not the baseline)" if claim.against else ""
            lines.append(f"| {what}{margin}{against} | {cell} | {word} |")
        lines.append("")
    for stage in dict.fromkeys(r["stage"] for r in rows):
        stage_rows = [r for r in rows if r["stage"] == stage]
        lines += [f"## After {stage}: mean [95% CI] per arm", "",
                  "| metric | chance | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
        for metric in dict.fromkeys(r["metric"] for r in stage_rows):
            cells = {r["arm"]: mean_ci(r["mean"], r["ci_low"], r["ci_high"])
                     for r in stage_rows if r["metric"] == metric}
            lines.append(f"| {metric} | {fmt(levels.get((stage, metric)), 2)} | "
                         + " | ".join(cells.get(a, "-") for a in arms) + " |")
        lines += ["", f"Paired differences against the baseline `{spec.baseline}` (arm - baseline, same seed): "
                      "mean [95% CI]; higher / lower when the interval excludes 0.", "",
                  "| metric | " + " | ".join(a for a in arms if a != spec.baseline) + " |",
                  "|---|" + "---|" * sum(a != spec.baseline for a in arms)]
        for metric in dict.fromkeys(r["metric"] for r in stage_rows):
            cells = {r["arm"]: f"{mean_ci(r['diff'].mean, r['diff'].low, r['diff'].high)} {r['verdict']}"
                     for r in stage_rows if r["metric"] == metric and r["diff"]}
            lines.append(f"| {metric} | " + " | ".join(cells.get(a, "-") for a in arms if a != spec.baseline) + " |")
        lines.append("")
    lines += trend_section(spec, results, rows) + fraction_section(spec, results, rows)
    lines += cost_table(spec, results)
    return "\n".join(lines) + "\n"


# ============================================================================ trends and fractions
def spearman(xs: list[float], ys: list[float]) -> float:
    from scipy import stats

    return float(stats.spearmanr(xs, ys).statistic) if len(xs) > 2 else math.nan


def trend_result(spec: SweepSpec, trend: Trend, results: list[dict], rows: list[dict]) -> dict:
    """Spearman's rho of the arm means against x, and per seed (arms of that seed) with its interval."""
    stage_rows = [r for r in rows if r["metric"] == trend.metric and (not trend.stage or r["stage"] == trend.stage)]
    stage = stage_rows[-1]["stage"] if stage_rows else trend.stage
    means = {r["arm"]: r for r in stage_rows if r["stage"] == stage}
    arms = sorted(means, key=lambda a: arm_setting(spec, a, trend.x))
    rho = spearman([arm_setting(spec, a, trend.x) for a in arms], [means[a]["mean"] for a in arms])
    per_seed_rho = []
    for seed in sorted({s for r in means.values() for s in r["seeds"]}):
        present = [a for a in arms if seed in means[a]["seeds"]]
        value = spearman([arm_setting(spec, a, trend.x) for a in present],
                         [means[a]["values"][means[a]["seeds"].index(seed)] for a in present])
        if not math.isnan(value):
            per_seed_rho.append(value)
    sign = 1 if trend.direction == "increasing" else -1
    seeds = t_interval(per_seed_rho) if per_seed_rho else Interval(0, math.nan, math.nan, math.nan, math.nan)
    if not math.isnan(rho) and sign * rho >= trend.min_rho:
        word = "supported"
    elif seeds.n >= 2 and max(sign * seeds.low, sign * seeds.high) < trend.min_rho:
        word = "refuted"
    else:
        word = f"inconclusive at n={seeds.n}"
    return {"stage": stage, "arms": arms, "means": means, "rho": rho, "seeds": seeds, "verdict": word}


def trend_section(spec: SweepSpec, results: list[dict], rows: list[dict]) -> list[str]:
    if not spec.trends:
        return []
    lines = ["## Trends across arms", "",
             "Spearman's rank correlation of the arms' means with the arms' setting; per seed, the same over that "
             "seed's arms (mean [95% CI]). Supported when the correlation of the means reaches the bar; refuted when "
             "the per-seed interval lies below it.", ""]
    for trend in spec.trends:
        found = trend_result(spec, trend, results, rows)
        bar = f"{'>=' if trend.direction == 'increasing' else '<='} {'' if trend.direction == 'increasing' else '-'}"
        lines += [f"**{trend.text or f'{trend.metric} {trend.direction} with {trend.x}'}** "
                  f"(after {found['stage']}; bar: rho {bar}{trend.min_rho:g})", "",
                  f"| {trend.x.rsplit('.', 1)[-1]} | arm | {trend.metric} mean [95% CI] |", "|---|---|---|"]
        for arm in found["arms"]:
            row = found["means"][arm]
            lines.append(f"| {arm_setting(spec, arm, trend.x):g} | {arm} | "
                         f"{mean_ci(row['mean'], row['ci_low'], row['ci_high'])} |")
        seeds = found["seeds"]
        lines += ["", f"rho of the means {fmt(found['rho'])}; per seed {mean_ci(seeds.mean, seeds.low, seeds.high)} "
                      f"(n={seeds.n}): **{found['verdict']}**", ""]
    return lines


def fraction_result(fraction: Fraction, results: list[dict], rows: list[dict]) -> dict:
    """(arm - chance) / (of - chance): the ratio of the means, and per seed with its interval."""
    levels = chance_levels(results)
    pick = [r for r in rows if r["metric"] == fraction.metric and (not fraction.stage or r["stage"] == fraction.stage)]
    stage = pick[-1]["stage"] if pick else fraction.stage
    arm = next((r for r in pick if r["stage"] == stage and r["arm"] == fraction.arm), None)
    of = next((r for r in pick if r["stage"] == stage and r["arm"] == fraction.of), None)
    chance = levels.get((stage, fraction.metric), 0.0)
    if arm is None or of is None:
        return {"stage": stage, "chance": chance, "ratio": math.nan, "seeds": Interval(0, *[math.nan] * 4)}
    ratio = (arm["mean"] - chance) / (of["mean"] - chance) if of["mean"] != chance else math.nan
    per_seed_values = [(arm["values"][arm["seeds"].index(s)] - chance) / (of["values"][of["seeds"].index(s)] - chance)
                       for s in arm["seeds"] if s in of["seeds"] and of["values"][of["seeds"].index(s)] != chance]
    return {"stage": stage, "chance": chance, "ratio": ratio, "arm": arm, "of": of,
            "seeds": t_interval(per_seed_values) if per_seed_values else Interval(0, *[math.nan] * 4)}


def fraction_section(spec: SweepSpec, results: list[dict], rows: list[dict]) -> list[str]:
    if not spec.fractions:
        return []
    lines = ["## Fractions of a gain above chance", "",
             "| what | metric | chance | arm | of | (arm - chance) / (of - chance): ratio of means | per seed |",
             "|---|---|---|---|---|---|---|"]
    for fraction in spec.fractions:
        found = fraction_result(fraction, results, rows)
        if "arm" not in found:
            continue
        arm, of, seeds = found["arm"], found["of"], found["seeds"]
        lines.append(f"| {fraction.text or f'{fraction.arm} keeps of {fraction.of}'} | {fraction.metric} "
                     f"({found['stage']}) | {fmt(found['chance'])} | {fraction.arm} {fmt(arm['mean'])} | "
                     f"{fraction.of} {fmt(of['mean'])} | {fmt(found['ratio'])} | "
                     f"{mean_ci(seeds.mean, seeds.low, seeds.high)} |")
    return lines + [""]


def cost_table(spec: SweepSpec, results: list[dict]) -> list[str]:
    """Training seconds per run and stage (a shared stage counts once per run that uses it)."""
    lines = ["## Cost (wall seconds of training on the machine that ran it)", "",
             "| arm | stages | mean seconds per run | runs |", "|---|---|---|---|"]
    for arm in spec.arms:
        runs = [r for r in results if r["arm"] == arm]
        if not runs:
            continue
        seconds = [sum(s["seconds"] for s in r["stages"].values()) for r in runs]
        per_stage = " + ".join(f"{name} {sum(r['stages'][name]['seconds'] for r in runs) / len(runs):.0f}"
                               for name in runs[0]["stages"])
        lines.append(f"| {arm} | {per_stage} | {sum(seconds) / len(seconds):.0f} | {len(runs)} |")
    return lines + [""]


def aggregate(root: str | Path, into: str | Path | None = None, command: str | None = None) -> dict:
    """Write results.csv, results.md and the plots for the runs under ``root``; returns what was written."""
    root = Path(root)
    if not (root / "sweep.yaml").is_file():
        raise FileNotFoundError(f"{root} holds no sweep (no sweep.yaml): pass the folder `dsvl-lab sweep` wrote, "
                                f"e.g. runs/sweeps/<study>")
    into = Path(into) if into else root
    spec, results, missing = load_results(root)
    if not results:
        raise ValueError(f"{root}: no finished runs yet; run `dsvl-lab sweep` first")
    rows = summary_rows(spec, results)
    command = command or f"dsvl-lab aggregate {root}" + (f" --into {into}" if into != root else "")
    written = [write_text_atomic(into / "results.csv", results_csv(rows)),
               write_text_atomic(into / "results.md", results_md(spec, results, rows, missing, command))]
    chance = chance_levels(results)
    written += interval_plots(spec, rows, chance, into)
    written += curve_plots(spec, results, into)
    written += trend_plots(spec, rows, chance, into)
    return {"results": len(results), "missing": missing, "written": [str(p) for p in written]}
