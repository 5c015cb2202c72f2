"""Study analyses beyond arm-vs-baseline: curve measures (an early peak), trends across arms (Spearman),
fractions of a gain above chance, and the stage field that draws the language curve (StageSpec.language_every);
each language study in smoke mode."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from dsvl_lab.ablations import SweepConfigError, SweepSpec
from dsvl_lab.ablations.aggregate import fraction_result, measure_value, results_md, summary_rows, trend_result
from dsvl_lab.ablations.plots import slug
from dsvl_lab.ablations.spec import Measure
from dsvl_lab.training.spec import StageConfigError, stage_spec

ROOT = Path(__file__).resolve().parents[1]
RATIO = "stages.stage2_joint.data.language_ratio"


def study(**changes) -> dict:
    data = {"study": "ratio", "base": {"stages": ["stage1_adaptor", "stage2_joint"], "precision": "32-true"},
            "arms": {"all_text": {RATIO: 1.0}, "mixed": {RATIO: 0.5}, "all_image": {RATIO: 0.0}},
            "seeds": [0, 1, 2], "baseline": "mixed"}
    data.update(changes)
    return data


def result(arm: str, seed: int, perplexity: float, accuracy: float, curve: list | None = None) -> dict:
    return {"arm": arm, "seed": seed,
            "stages": {"stage2_joint": {"seconds": 1.0, "curves": {"val/text_perplexity": curve or []}}},
            "metrics": {"stage2_joint": {"text_perplexity": perplexity, "mean/fine": accuracy, "chart/fine": accuracy,
                                         "chart/fine/chance": 0.25}}}


# ============================================================================ validation
@pytest.mark.parametrize("key, value, expected", [
    ("measures", [{"name": "peak", "curve": "stage2_joint:val/text_perplexity", "stat": "top"}], "measures[0].stat"),
    ("measures", [{"name": "peak", "curve": "no-colon"}], "'<stage>:<metric>'"),
    ("measures", [{"name": "peak", "curve": "s:m", "steps": [5]}], "[first, last]"),
    ("trends", [{"x": "stages.stage2_joint.steps", "metric": "text_perplexity"}], "sets no number"),
    ("trends", [{"x": RATIO, "metric": "text_perplexity", "direction": "up"}], "trends[0].direction"),
    ("fractions", [{"arm": "mixed", "of": "all_imag", "metric": "mean/fine"}], "'all_imag' is not an arm"),
    ("fractions", [{"arm": "mixed", "metric": "mean/fine"}], "fractions[0].of: missing"),
    ("claims", [{"arm": "mixed", "metric": "text_perplexity", "against": "al_text"}], "'al_text' is not an arm"),
    ("claims", [{"arm": "mixed", "metric": "text_perplexity", "against": "mixed"}], "compared with itself"),
])
def test_bad_analyses_are_named_before_anything_runs(key, value, expected):
    with pytest.raises(SweepConfigError, match=re_escape(expected)):
        SweepSpec.from_dict(study(**{key: value}))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_language_every_is_a_stage_field_left_out_of_old_hashes():
    spec = stage_spec("stage2_joint")
    assert "language_every" not in spec.to_dict()  # specs written before the field keep their hash
    assert spec.replace(language_every=10).to_dict()["language_every"] == 10
    with pytest.raises(StageConfigError, match="language_every"):
        spec.replace(language_every=-1)
    plan = SweepSpec.from_dict(study(base={"stages.stage2_joint.language_every": 10, "precision": "32-true"})).runs()[0]
    assert plan.stages[1].language_every == 10


# ============================================================================ the analyses
def test_a_measure_reads_a_window_of_a_curve():
    run = result("a", 0, 1.0, 0.5, curve=[[5, 100.0], [10, 140.0], [15, 120.0], [60, 200.0]])
    assert measure_value(run, Measure("peak", "stage2_joint:val/text_perplexity", "max", (1, 50))) == 140.0
    assert measure_value(run, Measure("all", "stage2_joint:val/text_perplexity", "max")) == 200.0
    assert measure_value(run, Measure("end", "stage2_joint:val/text_perplexity", "last")) == 200.0
    assert measure_value(run, Measure("none", "stage2_joint:val/text_perplexity", "max", (100, 200))) is None


def test_trend_is_spearman_over_arm_means_and_per_seed():
    spec = SweepSpec.from_dict(study(trends=[{"x": RATIO, "metric": "text_perplexity", "direction": "decreasing"}]))
    values = {"all_text": [130, 131, 129], "mixed": [135, 134, 138], "all_image": [180, 150, 170]}
    results = [result(arm, seed, v[seed], 0.5) for arm, v in values.items() for seed in range(3)]
    found = trend_result(spec, spec.trends[0], results, summary_rows(spec, results))
    assert found["rho"] == pytest.approx(-1.0) and found["verdict"] == "supported"
    assert found["seeds"].n == 3 and found["seeds"].mean == pytest.approx(-1.0)
    shuffled = {"all_text": [150, 131, 170], "mixed": [135, 134, 129], "all_image": [130, 150, 138]}
    results = [result(arm, seed, v[seed], 0.5) for arm, v in shuffled.items() for seed in range(3)]
    found = trend_result(spec, spec.trends[0], results, summary_rows(spec, results))
    assert found["verdict"] != "supported"
    assert "## Trends across arms" in results_md(spec, results, summary_rows(spec, results), [], "cmd")


def test_fraction_of_a_gain_above_chance():
    spec = SweepSpec.from_dict(study(fractions=[{"arm": "mixed", "of": "all_image", "metric": "chart/fine"}]))
    accuracy = {"mixed": [0.55, 0.55, 0.55], "all_image": [0.85, 0.85, 0.85], "all_text": [0.25] * 3}
    results = [result(arm, seed, 100.0, v[seed]) for arm, v in accuracy.items() for seed in range(3)]
    found = fraction_result(spec.fractions[0], results, summary_rows(spec, results))
    assert found["chance"] == pytest.approx(0.25)
    assert found["ratio"] == pytest.approx(0.5) and found["seeds"].mean == pytest.approx(0.5)
    assert not math.isnan(found["ratio"])


def test_a_claim_against_another_arm_pairs_the_seeds_of_those_two_arms():
    claims = [{"arm": "all_text", "metric": "text_perplexity", "direction": "less", "against": "all_image"},
              {"arm": "all_text", "metric": "text_perplexity", "direction": "less"}]
    spec = SweepSpec.from_dict(study(claims=claims))
    values = {"all_text": [130, 131, 129], "mixed": [129, 130, 128], "all_image": [170, 165, 172]}
    results = [result(arm, seed, v[seed], 0.5) for arm, v in values.items() for seed in range(3)]
    text = results_md(spec, results, summary_rows(spec, results), [], "cmd")
    claims_table = text.split("## Claims")[1].split("\n## ")[0]
    # all_text - all_image = -40, -34, -43 each seed: supported; all_text - mixed = +1 each seed: refuted.
    assert ("| all_text less than all_image on text_perplexity (all_text - all_image, not the baseline) | -39.000 ["
            in claims_table)
    assert "| all_text less than mixed on text_perplexity | 1.000 [1.000, 1.000] | refuted |" in claims_table
    assert claims_table.count("| supported |") == 1


def test_rise_is_the_peak_above_the_start_and_throughput_reads_the_stage_cost():
    run = result("a", 0, 1.0, 0.5, curve=[[0, 130.0], [10, 150.0], [20, 140.0], [100, 170.0]])
    assert measure_value(run, Measure("spike", "stage2_joint:val/text_perplexity", "rise", (1, 50))) \
        == pytest.approx(20.0)
    run["stages"]["stage2_joint"].update(samples=3200, seconds=160.0)
    assert measure_value(run, Measure("speed", "stage2_joint:samples/s", "throughput")) == pytest.approx(20.0)


# ============================================================================ the language studies in smoke mode
LANGUAGE_STUDIES = ("language_ratio", "modality_warmup", "modality_grouping", "stages")


@pytest.mark.parametrize("name", LANGUAGE_STUDIES)
def test_language_study_runs_in_smoke_mode_and_aggregates(name, tmp_path):
    """One seed of each study on micro presets: every run finishes, and the analyses its YAML asks for
    are in results.md (claims, trends, fractions) with the plots."""
    from dsvl_lab.ablations import aggregate, run_sweep

    spec = SweepSpec.load(ROOT / "ablations" / name / "sweep.yaml")
    plan = run_sweep(spec, tmp_path / "runs", smoke=True, jobs=2, seeds=[0])
    assert set(plan.status().values()) == {"done"}
    outcome = aggregate(plan.root, tmp_path / "out")
    assert outcome["results"] == len(spec.arms)  # seed 0 of every arm; the other smoke seed is "missing"
    assert outcome["missing"] and all("-s0-" not in name for name in outcome["missing"])
    text = (tmp_path / "out" / "results.md").read_text()
    assert "## Claims" in text
    assert ("## Trends across arms" in text) == bool(spec.trends)
    assert ("## Fractions of a gain above chance" in text) == bool(spec.fractions)
    measured = {row.split(",")[1] for row in (tmp_path / "out" / "results.csv").read_text().splitlines()[1:]}
    drawn = [trend for trend in spec.trends if trend.metric in measured]  # smoke runs measure no language
    assert bool(drawn) == bool(spec.trends)
    for trend in drawn:
        assert (tmp_path / "out" / f"trend-{slug(trend.metric)}.png").is_file()
    if any(m.stat == "throughput" for m in spec.measures):
        assert "training samples/s" in (tmp_path / "out" / "results.csv").read_text()


# ============================================================================ transfer between sizes
def test_transfer_reads_the_committed_intervals_and_names_the_outcome(tmp_path):
    """A study set against itself reproduces its results.md intervals; the words follow the verdicts."""
    from dsvl_lab.ablations.aggregate import Interval
    from dsvl_lab.ablations.spec import Claim
    from dsvl_lab.ablations.transfer import Study, Transfer, transfers, write_transfer

    study = Study.load(ROOT / "ablations" / "encoder")
    found = transfers(study, study)
    assert [t.claim.metric for t in found] == [c.metric for c in study.spec.claims]
    assert found[0].smaller == found[0].larger and found[0].smaller[1] == "supported"  # results.md: supported
    assert abs(found[0].smaller[0].mean - 0.4083) < 1e-9
    assert found[0].word == "transfers"
    claim, wide = Claim("a", "m"), Interval(3, 0.0, 1.0, -1.0, 1.0)
    up, down = Interval(3, 1.0, 0.1, 0.5, 1.5), Interval(3, -1.0, 0.1, -1.5, -0.5)
    assert Transfer(claim, (up, "supported"), (down, "refuted")).word == "does not transfer"
    assert Transfer(claim, (up, "supported"), (wide, "inconclusive at n=3")).word == "inconclusive at n=3"
    assert Transfer(claim, (wide, "inconclusive at n=3"), (up, "supported")).word.startswith("nothing to transfer")
    written = write_transfer([ROOT / "ablations" / "encoder"] * 2, tmp_path, command="x")
    again = write_transfer([ROOT / "ablations" / "encoder"] * 2, tmp_path / "again", command="x")
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]


def test_transfer_refuses_unpaired_folders_and_a_claim_the_smaller_study_lacks(tmp_path):
    from dsvl_lab.ablations.transfer import write_transfer

    with pytest.raises(ValueError, match="in pairs"):
        write_transfer([ROOT / "ablations" / "encoder"], tmp_path)
    with pytest.raises(FileNotFoundError, match="results.csv"):
        write_transfer([ROOT / "ablations" / "encoder", tmp_path], tmp_path)
    with pytest.raises(ValueError, match="not among the claims"):
        write_transfer([ROOT / "ablations" / "encoder", ROOT / "ablations" / "language_ratio"], tmp_path)
