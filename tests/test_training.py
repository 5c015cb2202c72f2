"""Training stages: freeze policy, optimizer groups, hand-off, resume, NaN guard, config errors, CLI."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml

from dsvl_lab.data.datamodule import DSVLDataModule
from dsvl_lab.data.sample_cache import RENDER_ALWAYS, open_cache
from dsvl_lab.artifacts import tensor_checksum
from dsvl_lab.model import DSVLModel
from dsvl_lab.harness import resolve_precision
from dsvl_lab.training import (GROUPS, STAGE_NAMES, DSVLLitModule, HandoffError, StageConfigError, group_of,
                               paper_stage, run_pipeline, run_stage, stage_spec, write_stage_output)
from dsvl_lab.training.callbacks import NonFiniteGuard, NonFiniteLoss
from dsvl_lab.training.report import learning_rates, markdown
from dsvl_lab.training.run import pipeline_sample_keys

PRESET = "dsvl-micro-hybrid"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def micro_stage(name: str, steps: int = 2, **changes):
    """A paper stage's miniature, a few steps long, on small batches, from random weights."""
    spec = stage_spec(name, steps=steps)
    data = {"batch_size": 4, "warmup_steps": min(spec.data.warmup_steps, 1)}
    return spec.replace(starts_from="random", warmup_steps=1, data=data, **changes)


def bare_trainer(steps: int, callbacks=(), **options) -> L.Trainer:
    options = {"max_steps": steps, "max_epochs": 1, "accelerator": "cpu", "devices": 1, "logger": False,
               "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
               "limit_val_batches": 0, "num_sanity_val_steps": 0, "use_distributed_sampler": False, **options}
    return L.Trainer(callbacks=list(callbacks), **options)


class Snapshot(L.Callback):
    """Parameters at fit start; the optimizer's parameter set."""

    def on_fit_start(self, trainer, module) -> None:
        self.before = {n: p.detach().clone() for n, p in module.model.named_parameters()}

    def on_train_end(self, trainer, module) -> None:
        self.optimizer_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
        self.train_modes = {n: m.training for n, m in module.model.named_modules()}


# ============================================================================ groups and freezing
@pytest.mark.parametrize("preset", ["dsvl-micro-hybrid", "dsvl-micro-siglip", "dsvl-micro-sam"])
def test_every_parameter_belongs_to_exactly_one_group(preset):
    model = DSVLModel.from_name(preset)
    for name, _ in model.named_parameters():
        owners = [g for g, prefixes in GROUPS.items() if any(name.startswith(p) for p in prefixes)]
        assert len(owners) == 1, (name, owners)
        assert group_of(name) == owners[0]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_one_step_changes_exactly_the_stage_groups(stage):
    spec = micro_stage(stage, steps=1, learning_rate=1e-2)
    module = DSVLLitModule(PRESET, spec)
    snapshot = Snapshot()
    bare_trainer(1, [snapshot]).fit(module, datamodule=DSVLDataModule(module.config, spec.data, total_steps=1))
    trainable = {n for n, p in module.model.named_parameters() if group_of(n) in spec.trainable}
    changed = {n for n, p in module.model.named_parameters() if not torch.equal(p.detach(), snapshot.before[n])}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    # Every trainable group moved; a tensor may stay only if its gradient was exactly zero.
    assert {group_of(n) for n in changed} == set(spec.trainable)
    assert snapshot.optimizer_params == {id(p) for n, p in module.model.named_parameters() if n in trainable}
    for name, module_ in module.model.named_modules():
        params = list(module_.parameters())
        if params and not any(p.requires_grad for p in params):
            assert not snapshot.train_modes[name], f"frozen module {name} was in train mode"
        elif params:
            assert snapshot.train_modes[name], f"trainable module {name} was in eval mode"


def test_no_backward_through_a_frozen_prefix():
    """Stages 1-2: the vision towers' outputs carry no autograd graph; stage 3: SigLIP's does, SAM's not."""
    outputs = {}
    for stage in ("stage1_adaptor", "stage3_sft"):
        module = DSVLLitModule(PRESET, micro_stage(stage))
        module.configure_model()
        vision = module.model.vision_model
        hooks = [vision.low.register_forward_hook(lambda m, i, o: outputs.__setitem__((stage, "low"), o.requires_grad)),
                 vision.high.blocks[-1].register_forward_hook(
                     lambda m, i, o: outputs.__setitem__((stage, "sam_blocks"), o.requires_grad))]
        data = DSVLDataModule(module.config, dataclasses.replace(module.spec.data, batch_size=2), total_steps=1)
        module(data.train_batches[0]).backward()
        for hook in hooks:
            hook.remove()
    assert outputs == {("stage1_adaptor", "low"): False, ("stage1_adaptor", "sam_blocks"): False,
                       ("stage3_sft", "low"): True, ("stage3_sft", "sam_blocks"): False}


def test_paper_presets_hold_table_4():
    s1, s2, s3 = (paper_stage(n) for n in STAGE_NAMES)
    assert (s1.learning_rate, s2.learning_rate, s3.learning_rate) == (1e-3, 4.2e-5, 2e-5)
    assert (s1.schedule, s2.schedule, s3.schedule) == ("cosine", "step", "cosine")
    assert (s1.warmup_steps, s2.warmup_steps, s3.warmup_steps) == (128, 2000, 256)
    assert (s1.steps, s2.steps, s3.steps) == (15000, 42000, 10000)
    assert paper_stage("stage2_joint", "1.3b").learning_rate == 3e-5
    assert all(s.betas == (0.9, 0.95) and s.weight_decay == 0 and s.grad_clip == 1.0 for s in (s1, s2, s3))
    assert s1.trainable == ("aligner", "vision_model.high.neck")
    assert "language_model" in s2.trainable and "vision_model.low" not in s2.trainable
    assert "vision_model.low" in s3.trainable and "vision_model.high" not in s3.trainable
    assert s2.data.language_ratio == 0.7 and s2.data.warmup_steps > 0 and s2.data.group_by_modality
    assert s3.prompt_format == "chat"


def test_mini_sft_trains_the_siglip_tower_slower_and_the_report_says_so():
    spec = stage_spec("stage3_sft")
    assert spec.lr_of("vision_model.low") == pytest.approx(spec.learning_rate / 10)
    assert spec.lr_of("language_model") == spec.learning_rate
    assert paper_stage("stage3_sft").group_learning_rates == {}  # the paper: one rate for every group
    module = DSVLLitModule(PRESET, micro_stage("stage3_sft"))
    module.configure_model()
    rates = {g["name"].split("/")[0]: g["lr"] for g in module.parameter_groups()}
    assert rates["vision_model.low"] == pytest.approx(rates["language_model"] / 10)
    entry = {"learning_rate": spec.learning_rate, "spec": {"group_learning_rates": spec.group_learning_rates}}
    assert learning_rates(entry) == "0.0005 (vision_model.low 5e-05)"


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_lr_schedules_warm_up_then_follow_their_shape(schedule):
    spec = micro_stage("stage2_joint", steps=100, schedule=schedule).replace(warmup_steps=10)
    factors = [spec.lr_factor(k) for k in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(type(f) is float for f in factors)  # checkpoints reload with weights_only=True
    if schedule == "cosine":
        assert factors[-1] == pytest.approx(spec.min_lr_ratio, abs=0.01)
    elif schedule == "step":
        assert factors[79] == 1.0 and factors[80] == pytest.approx(0.316) and factors[95] == pytest.approx(0.316 ** 2)
    else:
        assert set(factors[10:]) == {1.0}


def test_stage_yaml_pieces_equal_the_presets():
    for name in STAGE_NAMES:
        for scale, suffix in (("mini", ""), ("paper-7b", "-paper-7b"), ("paper-1.3b", "-paper-1.3b")):
            piece = yaml.safe_load((CONFIGS / "stage" / f"{name}{suffix}.yaml").read_text())["model"]["stage"]
            assert stage_spec(name, scale).replace(**{k: v for k, v in piece.items() if k != "data"},
                                                   data=piece["data"]) == stage_spec(name, scale), (name, scale)


# ============================================================================ bad config values
@pytest.mark.parametrize("change, key", [
    ({"learning_rate": -1e-3}, "stage.learning_rate"),
    ({"trainable": ("aligner", "vision_model.mid")}, "stage.trainable"),
    ({"trainable": ()}, "stage.trainable"),
    ({"group_learning_rates": {"aligner": 0.0}}, "stage.group_learning_rates.aligner"),
    ({"steps": 0}, "stage.steps"),
    ({"schedule": "linear"}, "stage.schedule"),
    ({"starts_from": "stage7"}, "stage.starts_from"),
])
def test_bad_stage_values_name_the_key(change, key):
    with pytest.raises(StageConfigError) as error:
        stage_spec("stage2_joint").replace(**change)
    assert error.value.key == key and key in str(error.value)


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_language_ratio_outside_0_1_names_the_key(ratio):
    with pytest.raises(ValueError, match=r"stage\.data\.language_ratio: must be in \[0, 1\]"):
        stage_spec("stage2_joint").replace(data={"language_ratio": ratio})


def test_unknown_stage_and_preset_fail_before_training():
    with pytest.raises(StageConfigError, match="unknown stage 'stage4'"):
        stage_spec("stage4")
    with pytest.raises(ValueError, match="unknown preset 'dsvl-huge'"):
        DSVLLitModule("dsvl-huge", micro_stage("stage1_adaptor"))


@pytest.mark.parametrize("extra, key", [
    (["--model.stage.learning_rate=-1"], "stage.learning_rate"),
    (["--model.stage.data.language_ratio=1.5"], "stage.data.language_ratio"),
    (["--model.preset=dsvl-huge"], "unknown preset 'dsvl-huge'"),
    (["--model.stage=stage9"], "unknown stage 'stage9'"),
    (["--model.stage.trainable=[aligner,vision_model.mid]"], "stage.trainable"),
])
def test_fit_cli_refuses_bad_values_before_training(tmp_path, capsys, extra, key):
    from dsvl_lab.cli import main

    out = tmp_path / "run"
    code = main(["fit", "--config", str(CONFIGS / "model" / f"{PRESET}.yaml"),
                 "--config", str(CONFIGS / "stage" / "stage1_adaptor.yaml"),
                 "--config", str(CONFIGS / "trainer" / "cpu.yaml"), "--trainer.default_root_dir", str(out), *extra])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and message.startswith("dsvl-lab fit: error:") and key in message, message
    assert not (out / "checkpoints").exists()


def test_fit_cli_trains_a_stage_from_yaml_pieces(tmp_path):
    from dsvl_lab.cli import main

    out = tmp_path / "fit"
    code = main(["fit", "--config", str(CONFIGS / "model" / f"{PRESET}.yaml"),
                 "--config", str(CONFIGS / "stage" / "stage2_joint.yaml"),
                 "--config", str(CONFIGS / "data" / "no-warmup.yaml"),
                 "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
                 "--model.stage.starts_from=random", "--model.stage.steps=2", "--model.stage.data.batch_size=2",
                 "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar=false", "--eval_samples=1"])
    assert code == 0
    card = yaml.safe_load((out / "model" / "stage.json").read_text())
    assert card["stage"] == "stage2_joint" and card["steps"] == 2
    assert card["spec"]["data"]["warmup_steps"] == 0  # the data piece changed the stage's mixture
    assert (out / "checkpoints" / "last.ckpt").is_file()


# ============================================================================ hand-off
@pytest.fixture(scope="module")
def stage_outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("handoff")
    outputs = {}
    for preset, stage in [(PRESET, "stage1_adaptor"), (PRESET, "stage2_joint"), ("dsvl-micro-siglip", "stage2_joint")]:
        folder = root / f"{preset}-{stage}"
        write_stage_output(DSVLModel.from_name(preset), folder, stage, preset, steps=1)
        outputs[(preset, stage)] = folder
    return outputs


def test_handoff_accepts_the_previous_stage(stage_outputs):
    spec = micro_stage("stage3_sft").replace(starts_from="stage2_joint")
    module = DSVLLitModule(PRESET, spec, start=str(stage_outputs[(PRESET, "stage2_joint")]))
    module.configure_model()
    assert module.model is not None


def test_handoff_refuses_a_missing_stage(stage_outputs, tmp_path):
    spec = micro_stage("stage3_sft").replace(starts_from="stage2_joint")
    with pytest.raises(HandoffError, match="holds the output of stage1_adaptor.*stage2_joint stage is missing"):
        DSVLLitModule(PRESET, spec, start=str(stage_outputs[(PRESET, "stage1_adaptor")]))
    with pytest.raises(HandoffError, match="stage2_joint stage is missing"):
        DSVLLitModule(PRESET, spec, start=str(tmp_path / "nothing-here"))
    with pytest.raises(HandoffError, match="no checkpoint was given"):
        DSVLLitModule(PRESET, spec, start=None)


def test_handoff_refuses_another_preset(stage_outputs):
    spec = micro_stage("stage3_sft").replace(starts_from="stage2_joint")
    with pytest.raises(HandoffError,
                       match="trained with preset dsvl-micro-siglip, but this run uses dsvl-micro-hybrid"):
        DSVLLitModule(PRESET, spec, start=str(stage_outputs[("dsvl-micro-siglip", "stage2_joint")]))


def test_handoff_refuses_altered_weights(stage_outputs, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "altered"
    shutil.copytree(stage_outputs[(PRESET, "stage2_joint")], folder)
    weights = folder / "model" / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if k.startswith("aligner"))
    state[key] = state[key] + 1
    save_file(state, weights)
    module = DSVLLitModule(PRESET, micro_stage("stage3_sft").replace(starts_from="stage2_joint"), start=str(folder))
    with pytest.raises(HandoffError, match="changed since stage stage2_joint wrote them"):
        module.configure_model()


# ============================================================================ resume, NaN guard, pipeline
class Killed(RuntimeError):
    pass


class StopAt(L.Callback):
    """Simulates a killed run: an exception after step ``k`` (the checkpoint of an earlier step survives)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Killed(f"killed at step {self.step}")


def resumable_stage():
    return micro_stage("stage2_joint", steps=6).replace(data={"warmup_steps": 2, "language_ratio": 0.5})


def test_a_killed_stage_resumes_to_the_same_weights_and_metrics(tmp_path):
    torch.set_num_threads(2)
    options = dict(progress=False, eval_samples=2, checkpoint_every=3, language_eval=False, throughput=False,
                   num_workers=0, val_every=3)
    L.seed_everything(0)
    whole = run_stage(PRESET, resumable_stage(), tmp_path / "whole", **options)
    L.seed_everything(0)
    with pytest.raises(Killed):  # Lightning re-raises after its own clean-up
        run_stage(PRESET, resumable_stage(), tmp_path / "killed", extra_callbacks=[StopAt(4)], **options)
    assert not (tmp_path / "killed" / "model").exists()
    L.seed_everything(0)
    resumed = run_stage(PRESET, resumable_stage(), tmp_path / "killed", **options)
    assert resumed.resumed and resumed.steps == whole.steps == 6

    def weights(run):
        return tensor_checksum(DSVLModel.from_pretrained(run.model_folder).state_dict())

    assert weights(resumed) == weights(whole)
    assert resumed.evaluation == whole.evaluation
    final_val = [{k: v for k, v in row.items() if k.startswith("val/") and v} for row in
                 (read_metrics(tmp_path / name) for name in ("whole", "killed"))]
    assert final_val[0] == final_val[1]


def read_metrics(run: Path) -> dict:
    import csv

    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    last = {}
    for row in rows:
        last.update({k: v for k, v in row.items() if v})
    return last


class Poison(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(p for p in module.model.aligner.parameters()).fill_(float("nan"))


def test_nan_guard_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    spec = micro_stage("stage1_adaptor", steps=6)
    with pytest.raises(NonFiniteLoss, match=r"step 3 of stage1_adaptor: the loss is nan.*last good checkpoint"):
        run_stage(PRESET, spec, tmp_path, progress=False, checkpoint_every=2, language_eval=False, throughput=False,
                  num_workers=0, extra_callbacks=[Poison(3)])
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())
    assert not (tmp_path / "model").exists()  # nothing handed on


def test_nan_guard_names_a_non_finite_gradient_or_an_overflowing_norm():
    layer = torch.nn.Linear(3, 2)
    module = SimpleNamespace(named_parameters=layer.named_parameters, spec=SimpleNamespace(name="stage2_joint"))
    trainer = SimpleNamespace(callback_metrics={"train/loss": torch.tensor(2.0)}, global_step=7)
    guard = NonFiniteGuard()
    layer.weight.grad, layer.bias.grad = torch.zeros(2, 3), torch.tensor([0.0, float("inf")])
    named = r"step 7 of stage2_joint: gradients of 1 tensors are not finite \(e\.g\. bias\)"
    with pytest.raises(NonFiniteLoss, match=named):
        guard.on_before_optimizer_step(trainer, module, None)
    layer.bias.grad = torch.zeros(2)
    guard.on_before_optimizer_step(trainer, module, None)  # every gradient finite: the step goes on
    layer.weight.grad = torch.full((2, 3), 3e38)  # finite elements whose norm overflows fp32
    with pytest.raises(NonFiniteLoss, match="the total gradient norm overflows"):
        guard.on_before_optimizer_step(trainer, module, None)


def test_smoke_pipeline_runs_three_checked_stages_and_reports(tmp_path):
    samples = tmp_path.parent / f"{tmp_path.name}-samples"
    report = run_pipeline(PRESET, tmp_path, smoke=True, progress=False, num_workers=0, sample_cache=samples)
    # what the stages drew was rendered once into the sample cache first
    drawn = {key for key in pipeline_sample_keys(PRESET, smoke=True) if (key.family, key.detail) not in RENDER_ALWAYS}
    assert drawn and all(key in open_cache(str(samples)) for key in drawn)
    assert [s["name"] for s in report["stages"]] == list(STAGE_NAMES)
    assert all(s["frozen_unchanged"] for s in report["stages"])
    # precision "auto" (the default) is resolved on this machine and recorded, in the report as well
    assert {s["precision"] for s in report["stages"]} == {resolve_precision("auto")}
    text = (tmp_path / "report.md").read_text()
    assert text == markdown(report) and "| chance |" in text
    for stage in STAGE_NAMES:
        assert (tmp_path / stage / "model" / "stage.json").is_file()
    vl = report["stages"][-1]["evaluation"]["vl"]
    assert set(vl) == {f"{f}/{d}" for f in ("chart", "ocr", "doc", "screen", "scene") for d in ("coarse", "fine")}
    assert all(0 < score["chance"] < 1 and not math.isnan(score["option_accuracy"]) for score in vl.values())
    # Running the same command again reuses the finished stages: same report, weights not rewritten.
    written = {stage: (tmp_path / stage / "model" / "model.safetensors").stat().st_mtime_ns for stage in STAGE_NAMES}
    again = run_pipeline(PRESET, tmp_path, smoke=True, progress=False, num_workers=0, sample_cache="off")
    assert again["stages"] == json.loads(json.dumps(report["stages"]))  # as read back from report.json
    assert written == {stage: (tmp_path / stage / "model" / "model.safetensors").stat().st_mtime_ns
                       for stage in STAGE_NAMES}


# ============================================================================ distributed
@pytest.mark.ddp
def test_ddp_two_cpu_processes_with_gloo(tmp_path):
    """The same `dsvl-lab fit` under Lightning's DDP: 2 CPU processes, gloo, each step split across ranks."""
    import os
    import shutil
    import subprocess
    import sys

    command = shutil.which("dsvl-lab", path=str(Path(sys.executable).parent)) or "dsvl-lab"
    out = tmp_path / "ddp"
    args = [command, "fit", "--config", str(CONFIGS / "model" / f"{PRESET}.yaml"),
            "--config", str(CONFIGS / "stage" / "stage2_joint.yaml"),
            "--config", str(CONFIGS / "trainer" / "ddp-cpu.yaml"),
            "--model.stage.starts_from=random", "--model.stage.steps=3", "--model.stage.data.batch_size=2",
            "--model.stage.data.warmup_steps=0", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar=false", "--eval_samples=1", "--checkpoint_every=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    card = json.loads((out / "model" / "stage.json").read_text())
    assert card["world_size"] == 2 and card["strategy"] == "DDPStrategy" and card["steps"] == 3
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_a_stage_resumed_at_its_last_step_still_reports_its_evaluation(tmp_path):
    import shutil

    options = dict(progress=False, eval_samples=1, language_eval=False, throughput=False, num_workers=0)
    first = run_stage(PRESET, micro_stage("stage1_adaptor", steps=2), tmp_path, checkpoint_every=2, **options)
    shutil.rmtree(tmp_path / "model")  # as if killed during the final evaluation, before the hand-off
    again = run_stage(PRESET, micro_stage("stage1_adaptor", steps=2), tmp_path, checkpoint_every=2, **options)
    assert again.resumed and again.evaluation == first.evaluation
    assert json.loads((tmp_path / "model" / "stage.json").read_text())["evaluation"] == first.evaluation


def test_the_step_written_out_ends_with_the_weights_of_the_lightning_run(tmp_path):
    """training/step.py's plain loop (freeze, groups, forward, loss, backward, clip, step, schedule)
    is what run_stage does: on the micro preset both end with the same weights."""
    from dsvl_lab.training.run import pipeline_specs, run_stage
    from dsvl_lab.training.step import train_stage_by_hand

    spec = pipeline_specs("dsvl-micro-hybrid", smoke=True)[0].replace(steps=4)
    lightning = run_stage("dsvl-micro-hybrid", spec, tmp_path / "stage", progress=False, eval_samples=2,
                          language_eval=False, throughput=False, num_workers=0, precision="32-true")
    by_lightning = DSVLModel.from_pretrained(lightning.model_folder).state_dict()
    by_hand = train_stage_by_hand("dsvl-micro-hybrid", spec, precision="32-true").state_dict()
    before = train_stage_by_hand("dsvl-micro-hybrid", spec, steps=0, precision="32-true").state_dict()
    assert any(not torch.equal(by_hand[k], before[k]) for k in by_hand)  # the steps trained something
    # fp32: bit-identical. (Under bf16 autocast the two differ by rounding, about 1e-4 after 4 steps.)
    assert all(torch.equal(by_hand[k], by_lightning[k]) for k in by_hand)


def test_throughput_flops_of_a_batch_are_the_analytic_count_of_its_samples():
    from dsvl_lab.metrics.flops import step_flops
    from dsvl_lab.training.callbacks import batch_flops

    spec = micro_stage("stage2_joint")
    module = DSVLLitModule(PRESET, spec)
    data = DSVLDataModule(module.config, spec.data, total_steps=spec.steps, num_workers=0)
    text, image = None, None
    for batch in data.validation_batches():
        if int(batch["n_image"]):
            image = batch
        else:
            text = batch
    b, t = image["input_ids"].shape
    assert batch_flops(module.config, spec, image) == step_flops(module.config, spec, b, t, 1)["total"]
    b, t = text["input_ids"].shape
    assert batch_flops(module.config, spec, text) == step_flops(module.config, spec, b, t, 0)["total"]
    # a mixed batch (modality grouping off): its image samples and its text samples, each counted as such
    mixed = {**image, "n_image": 1, "pixel_values": image["pixel_values"][:1]}
    b, t = mixed["input_ids"].shape
    expected = step_flops(module.config, spec, 1, t, 1)["total"] + step_flops(module.config, spec, b - 1, t, 0)["total"]
    assert batch_flops(module.config, spec, mixed) == expected


def test_loader_workers_auto_is_none_on_a_cpu_and_bad_counts_are_refused(monkeypatch):
    from dsvl_lab.data.datamodule import loader_workers

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loader_workers("auto") == 0 and loader_workers(3) == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loader_workers("auto") == 1
    for bad in (-1, "two", 1.5, True):
        with pytest.raises(ValueError, match="num_workers must be a whole number >= 0 or 'auto'"):
            loader_workers(bad)
