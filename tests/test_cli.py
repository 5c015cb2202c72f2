"""The ``dsvl-lab`` command, run in-process through ``main([...])``."""
from __future__ import annotations

import json

import pytest
import torch

from dsvl_lab.cli import COMMANDS, main
from dsvl_lab.convert import OUR_CONFIG, WEIGHTS
from dsvl_lab.model import DSVLModel


@pytest.fixture(scope="module")
def micro_folder(tmp_path_factory):
    """A saved micro hybrid model in our format."""
    folder = tmp_path_factory.mktemp("micro")
    torch.manual_seed(0)
    DSVLModel.from_name("dsvl-micro-hybrid").save_pretrained(folder)
    return folder


def test_presets_table_lists_every_preset_with_exact_7b_count(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("dsvl-7b "))
    assert "7,331,390,721" in line and "hybrid" in line and "30 x 4096" in line and "576" in line
    assert "dsvl-micro-siglip" in out and "dsvl-tiny-hybrid" in out


def test_presets_json_has_component_breakdown(capsys):
    assert main(["presets", "--json"]) == 0
    by_name = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    big = by_name["dsvl-7b"]
    assert big["params"] == 7_331_390_721
    assert sum(big["params_by_component"].values()) == big["params"]
    assert by_name["dsvl-1.3b"]["params_by_component"]["vision_model.high"] == 0  # SigLIP only


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "Example" in capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    """A sub-command's one-line help is %-formatted by argparse: "95% CIs" once broke this page."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert all(name in out for name in COMMANDS) and "95% CIs" in out


def test_info_reads_config_and_counts(micro_folder, capsys):
    assert main(["info", str(micro_folder)]) == 0
    out = capsys.readouterr().out
    assert "format      ours" in out
    assert f"{DSVLModel.from_name('dsvl-micro-hybrid').num_params():,}" in out
    assert "F32" in out


def test_convert_roundtrip_with_dtype(micro_folder, tmp_path, capsys):
    dst = tmp_path / "converted"
    assert main(["convert", str(micro_folder), str(dst), "--dtype", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "[1/3]" in out and "[3/3]" in out
    assert (dst / WEIGHTS).exists() and (dst / OUR_CONFIG).exists()
    original, converted = DSVLModel.from_pretrained(micro_folder), DSVLModel.from_pretrained(dst)
    assert next(converted.parameters()).dtype == torch.bfloat16
    for (name, a), (_, b) in zip(original.state_dict().items(), converted.state_dict().items()):
        torch.testing.assert_close(a.to(torch.bfloat16), b, msg=name)


def test_convert_refuses_a_non_empty_destination(micro_folder, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("precious")
    assert main(["convert", str(micro_folder), str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("argv", [["info", "{missing}"], ["convert", "{missing}", "{out}"]])
def test_missing_folder_is_one_line_exit_2(argv, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "nope", out=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_folder_without_a_model_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model_type 'bert'" in err


def test_convert_with_an_unknown_preset_fails_before_reading(micro_folder, tmp_path, capsys):
    assert main(["convert", str(micro_folder), str(tmp_path / "out"), "--preset", "dsvl-huge"]) == 2
    captured = capsys.readouterr()
    assert "unknown preset 'dsvl-huge'" in captured.err and "[1/3]" not in captured.out
