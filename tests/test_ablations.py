"""The sweep layer: study YAML validation, run planning and sharing, statistics, and whole smoke sweeps
(uninterrupted, killed and resumed, with a crashing arm, through submitit), aggregation and the explorer."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dsvl_lab.ablations import SweepConfigError, SweepSpec, aggregate, plan_sweep, run_sweep
from dsvl_lab.ablations.aggregate import t_interval, verdict
from dsvl_lab.ablations.runner import describe
from dsvl_lab.config import DSVLConfig, parse_variant, variant_name

ROOT = Path(__file__).resolve().parents[1]
ENCODER = ROOT / "ablations" / "encoder" / "sweep.yaml"
DSVL_LAB = [sys.executable, "-m", "dsvl_lab.cli"]


def write_yaml(folder: Path, data: dict, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def small_study(**changes) -> dict:
    study = {"study": "tiny", "arms": {"a": {}, "b": {"stages.stage3_sft.learning_rate": 1e-3}},
             "seeds": [0], "baseline": "a", "base": {"preset": "dsvl-tiny-siglip", "precision": "32-true"}}
    study.update(changes)
    if study["baseline"] not in study["arms"]:
        study["baseline"] = next(iter(study["arms"]))
    return study


# ============================================================================ validation before anything runs
def test_encoder_study_expands_to_nine_paired_runs():
    spec = SweepSpec.load(ENCODER)
    runs = spec.runs()
    assert len(runs) == 9 and {r.arm for r in runs} == {"siglip", "sam", "hybrid"}
    for run in runs:  # the seed is every stage's data seed: same data order and initialisation across arms
        assert {s.data.seed for s in run.stages} == {run.seed}
    assert len({r.name for r in runs}) == 9
    assert {r.preset for r in spec.runs(smoke=True)} == {"dsvl-micro-siglip", "dsvl-micro-sam", "dsvl-micro-hybrid"}


@pytest.mark.parametrize("key, value, expected", [
    ("stages.stage2_joint.data.languge_ratio", 0.1, "did you mean 'language_ratio'"),
    ("stages.stage2_join.steps", 10, "did you mean 'stage2_joint'"),
    ("stages.stage2_joint.data.language_ratio", 1.5, "language_ratio: must be in [0, 1]"),
    ("model.aligner.projector_typ", "linear", "did you mean 'projector_type'"),
    ("evaluaton.samples", 3, "did you mean 'evaluation'"),
    ("preset", "dsvl-tiny-hybrd", "unknown preset"),
    ("stages", ["stage1_adaptor", "stage3_sft"], "set stages.stage3_sft.starts_from: stage1_adaptor"),
])
def test_a_bad_arm_is_named_before_anything_runs(tmp_path, key, value, expected):
    study = small_study(arms={"good": {}, "broken": {key: value}})
    with pytest.raises(SweepConfigError) as error:
        SweepSpec.load(write_yaml(tmp_path, study))
    assert "arms.broken" in str(error.value) and expected in str(error.value)
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_a_bad_key_with_the_fix(tmp_path):
    path = write_yaml(tmp_path, small_study(arms={"a": {}, "b": {"stages.stage3_sft.stpes": 5}}))
    result = subprocess.run([*DSVL_LAB, "sweep", str(path), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "stages.stage3_sft.stpes" in result.stderr and "did you mean 'steps'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_every_run(tmp_path):
    result = subprocess.run([*DSVL_LAB, "sweep", str(ENCODER), "--dry-run", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    listed = [line for line in result.stdout.splitlines() if line.strip().startswith("pending")]
    assert len(listed) == 9 and "9 runs" in result.stdout


def test_identical_earlier_stages_are_planned_once(tmp_path):
    study = small_study(arms={"low": {"stages.stage3_sft.data.language_ratio": 0.2},
                              "high": {"stages.stage3_sft.data.language_ratio": 0.8},
                              "other_model": {"preset": "dsvl-tiny-hybrid"}}, seeds=[0, 1], baseline="low")
    plan = plan_sweep(SweepSpec.from_dict(study), tmp_path)
    # per seed: low and high share stages 1-2 (2 nodes) and differ in stage 3 (2 nodes); other_model has 3
    assert len(plan.nodes) == 2 * (2 + 2 + 3)
    shared = [n for n in plan.nodes if len(n.children) > 1]
    assert len(shared) == 2 and all(n.spec["name"] == "stage2_joint" for n in shared)
    assert "shared:" in describe(plan) and "stage2_joint-s0" in describe(plan)


# ============================================================================ preset variants and aligners
def test_preset_variant_names_round_trip():
    name = variant_name("dsvl-tiny-hybrid", {"aligner.projector_type": "low_high_shared_mlp_gelu", "aligner.depth": 3})
    assert name == "dsvl-tiny-hybrid[aligner.depth=3,aligner.projector_type=low_high_shared_mlp_gelu]"
    assert parse_variant(name) == ("dsvl-tiny-hybrid", {"aligner.depth": 3,
                                                        "aligner.projector_type": "low_high_shared_mlp_gelu"})
    config = DSVLConfig.from_name(name)
    assert config.aligner.depth == 3 and config.name == name
    with pytest.raises(ValueError, match="needs encoder='hybrid'"):
        DSVLConfig.from_name("dsvl-micro-siglip[aligner.projector_type=low_high_shared_mlp_gelu]")


@pytest.mark.parametrize("kind", ["low_high_hybrid_split_mlp_gelu", "low_high_shared_mlp_gelu",
                                  "low_high_separate_mlp_gelu"])
def test_hybrid_aligner_designs_give_one_token_per_position(kind):
    from dsvl_lab.model import DSVLModel

    model = DSVLModel.from_name(f"dsvl-micro-hybrid[aligner.projector_type={kind}]")
    images = torch.rand(2, 3, model.config.image_size, model.config.image_size)
    embeds = model.encode_images(images)
    assert embeds.shape == (2, model.config.num_image_tokens, model.config.llm.hidden_size)
    high, low = model.vision_model(images)  # each branch reaches the output: zeroing one changes it
    assert not torch.equal(model.aligner((high, low)), model.aligner((torch.zeros_like(high), low)))
    assert not torch.equal(model.aligner((high, low)), model.aligner((high, torch.zeros_like(low))))


# ============================================================================ statistics
def test_student_t_interval_and_verdicts():
    stats = t_interval([0.5, 0.7, 0.9])
    assert stats.mean == pytest.approx(0.7) and stats.sd == pytest.approx(0.2)
    assert stats.high - stats.mean == pytest.approx(4.302653 * 0.2 / math.sqrt(3), rel=1e-5)  # t(0.975, 2)
    assert verdict(t_interval([0.4, 0.5, 0.6])) == "supported"
    assert verdict(t_interval([-0.4, -0.5, -0.6])) == "refuted"
    assert verdict(t_interval([-0.1, 0.2, 0.05])) == "inconclusive at n=3"
    assert verdict(t_interval([-0.02, -0.01, 0.0]), margin=0.05) == "supported"  # non-inferiority
    assert verdict(t_interval([0.4, 0.5, 0.6]), direction="less") == "refuted"
    assert verdict(t_interval([0.3])) == "inconclusive at n=1"


# ============================================================================ whole smoke sweeps
def metrics_of(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())["metrics"] for p in sorted((root / "runs").glob("*/result.json"))}


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    """The encoder study in smoke mode, uninterrupted: 3 arms x 2 seeds on micro presets."""
    out = tmp_path_factory.mktemp("sweeps")
    plan = run_sweep(SweepSpec.load(ENCODER), out, smoke=True, jobs=2)
    return plan.root


def test_smoke_sweep_finishes_every_run_and_aggregates_byte_for_byte(smoke_sweep, tmp_path):
    assert set(plan_sweep(SweepSpec.load(ENCODER), smoke_sweep.parent, smoke=True).status().values()) == {"done"}
    results = metrics_of(smoke_sweep)
    assert len(results) == 6 and all("mean/fine" in m["stage3_sft"] for m in results.values())
    names = ("results.csv", "results.md", "stage3_sft-intervals.png", "curve-stage2_joint-train_loss_vl.png")
    first = aggregate(smoke_sweep, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in names}
    aggregate(smoke_sweep, tmp_path)
    for name in names:
        assert (tmp_path / name).read_bytes() == before[name], name
    table = (tmp_path / "results.csv").read_text().splitlines()
    assert first["missing"] == []
    assert table[0].startswith("stage,metric,arm,n,mean,sd,ci_low,ci_high")
    assert any(line.startswith("stage3_sft,mean/fine,hybrid,2,") for line in table)
    # Each run keeps a TensorBoard log beside its CSV log.
    assert list(smoke_sweep.glob("stages/*/logs/tensorboard/events.out.tfevents.*"))
    # The runs read their task samples from one cache beside the study, rendered before they started.
    assert list((smoke_sweep.parent / "sample-cache").glob("v*/*/*/*.sample"))


def test_rerun_skips_finished_runs(smoke_sweep):
    before = {p: p.stat().st_mtime_ns for p in smoke_sweep.glob("runs/*/result.json")}
    lines: list[str] = []
    run_sweep(SweepSpec.load(ENCODER), smoke_sweep.parent, smoke=True, jobs=2, say=lines.append)
    assert "6 already done, 0 chains to run" in lines[0]
    assert before == {p: p.stat().st_mtime_ns for p in smoke_sweep.glob("runs/*/result.json")}


def test_killed_sweep_resumes_to_the_same_results(smoke_sweep, tmp_path):
    command = [*DSVL_LAB, "sweep", str(ENCODER), "--smoke", "--jobs", "2", "--out", str(tmp_path)]
    root = tmp_path / "encoder-smoke"
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(root.glob("runs/*/result.json")):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, with runs in flight
    process.wait()
    done_at_kill = len(list(root.glob("runs/*/result.json")))
    assert 1 <= done_at_kill < 6
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    assert metrics_of(root) == metrics_of(smoke_sweep)


def test_a_crashing_run_is_recorded_and_the_others_finish(tmp_path):
    # seq_len 8 cannot hold a micro image's 16 tokens: this passes validation and fails in training.
    study = small_study(arms={"ok": {}, "crashes": {"stages.stage1_adaptor.data.seq_len": 8}})
    spec = SweepSpec.from_dict(study, write_yaml(tmp_path, study))
    plan = run_sweep(spec, tmp_path / "out", smoke=True, jobs=2)
    status = plan.status()
    assert sorted(status.values()) == ["done", "failed"]
    failed = next(name for name, s in status.items() if s == "failed")
    error = json.loads((plan.root / "runs" / failed / "error.json").read_text())
    assert failed.startswith("crashes-") and "seq_len 8 is too short" in error["error"]


def test_submitit_executor_runs_the_same_chains(tmp_path):
    pytest.importorskip("submitit")
    study = small_study(arms={"a": {}}, base={"preset": "dsvl-tiny-hybrid", "precision": "32-true"})
    spec = SweepSpec.from_dict(study, write_yaml(tmp_path, study))
    plan = run_sweep(spec, tmp_path / "out", smoke=True, executor="submitit-local", slurm={"cpus_per_run": 1})
    assert set(plan.status().values()) == {"done"}
    assert list((plan.root / "submitit").iterdir())  # submitit's own job folders


def test_explorer_opens_from_a_results_csv(smoke_sweep, tmp_path):
    from dsvl_lab.ablations.explorer import SweepExplorer

    aggregate(smoke_sweep, tmp_path / "encoder")
    explorer = SweepExplorer(tmp_path)
    assert explorer.study.value == "encoder" and explorer.detail.value == "fine"
    first = explorer.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and "seed 0" in explorer.table.value
    explorer.detail.value = "coarse"
    assert explorer.image.value != first and "chart/coarse" in explorer.table.value
    explorer.family.value = "mean"
    assert "mean/coarse" in explorer.table.value and "chart/coarse" not in explorer.table.value


def test_another_study_reuses_identical_stage_trainings(smoke_sweep, tmp_path):
    study = yaml.safe_load(ENCODER.read_text())
    study.update(study="encoder-copy", arms={"hybrid": study["arms"]["hybrid"]}, baseline="hybrid", claims=[])
    spec = SweepSpec.from_dict(study, write_yaml(tmp_path, study))
    lines: list[str] = []
    plan = run_sweep(spec, tmp_path / "out", smoke=True, jobs=2, reuse_from=smoke_sweep, say=lines.append)
    assert "reused 6 finished stage trainings" in "\n".join(lines)  # 3 stages x 2 seeds, none retrained
    assert not list(plan.root.glob("logs/*.log")) or all("already trained" in p.read_text()
                                                          for p in plan.root.glob("logs/*.log"))
    copied = metrics_of(plan.root)
    original = {name: m for name, m in metrics_of(smoke_sweep).items() if name.startswith("hybrid-")}
    assert copied == original


def test_explorer_output_carries_its_picture_for_readers_without_a_kernel(smoke_sweep, tmp_path):
    import base64

    from dsvl_lab.ablations.explorer import SweepExplorer

    aggregate(smoke_sweep, tmp_path / "encoder")
    explorer = SweepExplorer(tmp_path / "encoder")
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == explorer.image.value


@pytest.mark.parametrize("study", sorted(p.parent.name for p in (ROOT / "ablations").glob("*/sweep.yaml")))
def test_every_committed_study_validates_and_ships_its_results(study):
    folder = ROOT / "ablations" / study
    spec = SweepSpec.load(folder / "sweep.yaml")
    assert spec.study == study and len(spec.seeds) >= 3
    assert spec.runs(smoke=True) and all("micro" in run.preset for run in spec.runs(smoke=True))
    for name in ("README.md", "results.md", "results.csv"):
        assert (folder / name).is_file(), f"{study}: {name} is missing"
    last = spec.runs()[0].evaluated_stages[-1]
    assert (folder / f"{last}-intervals.png").is_file(), f"{study}: {last}-intervals.png is missing"


@pytest.mark.parametrize("part", ["encoder", "language_ratio"])
def test_the_scaling_study_ships_both_parts_and_its_transfer_table(part):
    folder = ROOT / "ablations" / "scaling" / part
    spec = SweepSpec.load(folder / "sweep.yaml")
    assert spec.study == f"scaling-{part}" and len(spec.seeds) >= 3
    assert all("small" in run.preset for run in spec.runs())  # the size up from the tiny study
    for name in ("results.md", "results.csv"):
        assert (folder / name).is_file(), f"scaling/{part}: {name} is missing"
    transfer = (ROOT / "ablations" / "scaling" / "transfer.md").read_text()
    for claim in spec.claims:
        assert claim.text in transfer, f"transfer.md lacks the claim {claim.text!r}"
