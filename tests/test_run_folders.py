"""Run folders never lose or misdescribe finished work (README "What happens when things go wrong").

One owner per folder (two real processes), no silent retraining over a finished stage, no resume
with another recipe, checkpoints that survive a failed write, a damaged checkpoint named before
training, and Ctrl-C that says what was kept.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dsvl_lab.checkpoint_io import AtomicCheckpointIO
from dsvl_lab.cli import main
from dsvl_lab.errors import RunFolderError
from dsvl_lab.run_folder import check_checkpoint, holder_of, owned
from dsvl_lab.training import run_stage
from dsvl_lab.training.spec import stage_spec

PRESET = "dsvl-micro-hybrid"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STAGE_OPTIONS = dict(progress=False, eval_samples=1, language_eval=False, throughput=False, num_workers=0)
HOLD = ("import sys, time\nfrom dsvl_lab.run_folder import owned\n"
        "with owned(sys.argv[1], command='test holder'):\n    print('held', flush=True)\n    time.sleep(120)\n")


def micro_stage(name: str = "stage1_adaptor", steps: int = 2, **changes):
    spec = stage_spec(name, steps=steps)
    return spec.replace(starts_from="random", warmup_steps=1,
                        data={"batch_size": 4, "warmup_steps": min(spec.data.warmup_steps, 1)}, **changes)


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def fit_args(out: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(CONFIGS / "model" / f"{PRESET}.yaml"),
            "--config", str(CONFIGS / "stage" / "stage1_adaptor.yaml"),
            "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
            "--model.stage.starts_from=random", "--model.stage.steps=2", "--model.stage.data.batch_size=2",
            "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar=false", "--eval_samples=1", *extra]


# ============================================================================ one owner
def test_a_second_process_is_refused_with_the_holder_named_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    holder = hold_in_another_process(folder)
    try:
        assert holder_of(folder)["pid"] == holder.pid
        with pytest.raises(RunFolderError, match=rf"another process: pid {holder.pid} on .*test holder"):
            with owned(folder):
                pass
        # The same refusal from a real command, before anything is trained or written.
        code = main(["pipeline", "--preset", PRESET, "--out", str(folder), "--smoke", "--no-progress"])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(error) == 1 and f"pid {holder.pid}" in error[0], error
        assert not (folder / "stage1_adaptor").exists() and not (folder / "report.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing: its record stays in .lock
        holder.wait()
    assert json.loads((folder / ".lock").read_text())["pid"] == holder.pid
    assert holder_of(folder) is None  # the kernel dropped the dead process's lock
    with owned(folder):
        assert holder_of(folder)["pid"] == os.getpid()
    said = capsys.readouterr().out
    assert f"taking over the lock left by pid {holder.pid}" in said
    assert (folder / ".lock").read_text() == ""  # released cleanly: emptied, not deleted


def test_a_process_may_reenter_a_folder_it_owns(tmp_path):
    with owned(tmp_path / "run"):
        with owned(tmp_path / "run"):  # the pipeline owns its --out and then trains a stage folder inside
            pass
        assert holder_of(tmp_path / "run")["pid"] == os.getpid()
    assert holder_of(tmp_path / "run") is None


# ============================================================================ no silent retraining, no other recipe
def test_fit_into_a_finished_folder_is_refused_then_resumed_or_restarted_on_request(tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(fit_args(out)) == 0
    weights = (out / "model" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(fit_args(out)) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "already holds a finished stage" in message and "--ckpt_path last" in message and "--fresh true" in message
    assert (out / "model" / "model.safetensors").read_bytes() == weights  # nothing replaced
    assert main(fit_args(out, "--ckpt_path", "last")) == 0  # resumed at its last step: the same stage again
    assert json.loads((out / "model" / "stage.json").read_text())["steps"] == 2
    assert main(fit_args(out, "--fresh", "true")) == 0


def test_resuming_with_another_recipe_is_refused_with_the_keys(tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(fit_args(out)) == 0
    card = (out / "model" / "stage.json").read_text()
    capsys.readouterr()
    # Extending a finished 2-step run to 4 steps used to train 0 steps and write the new recipe on the card.
    assert main(fit_args(out, "--ckpt_path", "last", "--model.stage.steps=4")) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stage.steps (2 -> 4)" in message and "different run, not a continuation" in message, message
    assert (out / "model" / "stage.json").read_text() == card
    # The Python API refuses the same way (the pipeline and the sweeps train through it).
    run_stage(PRESET, micro_stage(), tmp_path / "stage", checkpoint_every=2, **STAGE_OPTIONS)
    with pytest.raises(RunFolderError, match=r"stage\.learning_rate \(0\.002 -> 0\.01\)"):
        run_stage(PRESET, micro_stage(learning_rate=0.01), tmp_path / "stage", checkpoint_every=2, **STAGE_OPTIONS)
    again = run_stage(PRESET, micro_stage(), tmp_path / "stage", checkpoint_every=2, **STAGE_OPTIONS)
    assert again.resumed and again.steps == 2


# ============================================================================ checkpoints
def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import dsvl_lab.checkpoint_io as checkpoint_io

    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    good = {"global_step": 2, "state_dict": {"w": torch.arange(1000.0)}}
    io.save_checkpoint(good, path)

    def disk_full(checkpoint, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 3, "state_dict": {"w": torch.zeros(1000)}}, path)
    assert torch.equal(torch.load(path)["state_dict"]["w"], good["state_dict"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_a_stage_killed_by_a_failed_write_resumes_from_the_last_good_checkpoint(tmp_path, monkeypatch):
    import dsvl_lab.checkpoint_io as checkpoint_io

    real_save, saves = checkpoint_io.torch.save, []

    def fail_the_third(checkpoint, handle):
        saves.append(checkpoint["global_step"])
        if len(saves) == 3:
            handle.write(b"cut")
            raise OSError(28, "No space left on device")
        real_save(checkpoint, handle)

    monkeypatch.setattr(checkpoint_io.torch, "save", fail_the_third)
    with pytest.raises(OSError):
        run_stage(PRESET, micro_stage(steps=4), tmp_path, checkpoint_every=1, **STAGE_OPTIONS)
    assert check_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["step"] == 2
    monkeypatch.setattr(checkpoint_io.torch, "save", real_save)
    resumed = run_stage(PRESET, micro_stage(steps=4), tmp_path, checkpoint_every=1, **STAGE_OPTIONS)
    assert resumed.resumed and resumed.steps == 4


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_named_before_training_with_what_to_delete(tmp_path, capsys, damage):
    run_stage(PRESET, micro_stage(), tmp_path / "run", checkpoint_every=2, **STAGE_OPTIONS)
    shutil.rmtree(tmp_path / "run" / "model")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(64)  # zeros inside a tensor's bytes: only the CRC can tell
    last.write_bytes(bytes(data))
    started = time.perf_counter()
    with pytest.raises(RunFolderError, match=r"damaged|cannot be read") as refused:
        run_stage(PRESET, micro_stage(), tmp_path / "run", checkpoint_every=2, **STAGE_OPTIONS)
    assert f"rm {last}" in str(refused.value) and len(str(refused.value).splitlines()) == 1
    assert time.perf_counter() - started < 5  # before the model, the data or the trainer is built


# ============================================================================ Ctrl-C
def test_ctrl_c_stops_a_training_command_with_one_line_of_what_was_kept(tmp_path):
    out = tmp_path / "fit"
    command = shutil.which("dsvl-lab", path=str(Path(sys.executable).parent)) or "dsvl-lab"
    args = [command, *fit_args(out, "--model.stage.steps=400", "--checkpoint_every=2")]
    # A shell starts background jobs with SIGINT ignored, and Python then installs no Ctrl-C handler:
    # give the child the default disposition, as a terminal would.
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert last.is_file(), process.communicate()[1][-2000:]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    final = err.strip().splitlines()[-1]
    assert process.returncode == 130, err[-2000:]
    assert final.startswith("dsvl-lab fit: stopped by Ctrl-C. Kept in") and "fit at step" in final, final
    assert "Run the same command again to resume" in final
    assert check_checkpoint(last)["step"] >= 2 and holder_of(out) is None
