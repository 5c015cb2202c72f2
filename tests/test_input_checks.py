"""Structured input is checked before it is used: model configs, stage and sweep YAML, CLI numbers, output paths.

Every problem is the project's own error (a :class:`dsvl_lab.errors.InputError` subclass) naming the
file and the key, and on the command line one line with exit status 2. The fuzz tests at the end feed
random mutations of valid inputs and accept nothing else.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
import resource
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ORIGINAL_7B
from dsvl_lab import convert
from dsvl_lab.ablations import SweepConfigError, SweepSpec
from dsvl_lab.cli import main
from dsvl_lab.config import (MAX_PARAMS, PROJECTOR_TYPES, ConfigError, DSVLConfig, parameter_counts, preset_names,
                             read_config_json)
from dsvl_lab.errors import InputError
from dsvl_lab.model import DSVLModel
from dsvl_lab.training import StageSpec

ROOT = Path(__file__).resolve().parents[1]
STAGE_YAML = ROOT / "configs" / "stage" / "stage2_joint.yaml"


# ============================================================================ folders to break
@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """A micro hybrid model in each format: {"ours"|"hf"|"original": folder}."""
    root = tmp_path_factory.mktemp("formats")
    torch.manual_seed(0)
    model = DSVLModel.from_name("dsvl-micro-hybrid")
    model.save_pretrained(root / "ours")
    convert.to_hf(DSVLModel.from_name("dsvl-micro-hybrid", pixel_input="normalized")).save_pretrained(root / "hf")
    (root / "original").mkdir()
    (root / "original" / "config.json").write_text(json.dumps(ORIGINAL_7B))
    return {fmt: root / fmt for fmt in ("ours", "hf", "original")}


CONFIG_FILE = {"ours": "dsvl_config.json", "hf": "config.json", "original": "config.json"}


def config_path(folder: Path, fmt: str) -> Path:
    return folder / CONFIG_FILE[fmt]


def broken_copy(folder: Path, fmt: str, tmp_path: Path, change) -> Path:
    """A copy of the folder's config file (no weights: none are read before the config passes), changed."""
    target = tmp_path / f"broken-{fmt}"
    target.mkdir(exist_ok=True)
    data = json.loads(config_path(folder, fmt).read_text())
    change(data)
    config_path(target, fmt).write_text(json.dumps(data))
    return target


def setter(dotted: str, value):
    """change(data) that sets data[a][b] = value for ``"a.b"`` (value DELETE removes the key)."""
    def change(data):
        *parents, leaf = dotted.split(".")
        for part in parents:
            data = data[part]
        if value is DELETE:
            del data[leaf]
        else:
            data[leaf] = value
    return change


DELETE = object()


# ============================================================================ parameter count before building
def test_analytic_parameter_count_matches_the_built_model():
    """The ceiling is computed from the sizes alone; it must be the count of the model that would be built."""
    configs = [DSVLConfig.from_name(name) for name in preset_names()]
    for kind in PROJECTOR_TYPES:
        encoder = "hybrid" if kind.startswith("low_high") else ("sam" if kind == "identity" else "siglip")
        configs.append(DSVLConfig.from_name(f"dsvl-micro-{encoder}", **{"aligner.projector_type": kind,
                                                                        "aligner.depth": 3}))
    for config in configs:
        with torch.device("meta"):
            built = DSVLModel(config).num_params()
        assert sum(parameter_counts(config).values()) == built, config.name


@pytest.mark.parametrize("fmt, key, value, named", [
    ("ours", "llm.hidden_size", 10**9, "llm"),
    ("ours", "llm.num_layers", 10**9, "llm.num_layers"),
    ("ours", "llm.vocab_size", 10**15, "llm"),
    ("hf", "text_config.vocab_size", 10**15, "text_config"),
    ("original", "language_config.hidden_size", 10**8, "language_config"),
])
def test_absurd_config_is_refused_without_allocation(model_folders, tmp_path, fmt, key, value, named):
    folder = broken_copy(model_folders[fmt], fmt, tmp_path, setter(key, value))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: the peak so far
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        DSVLModel.from_pretrained(folder)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert seconds < 2 and peak < 20 * 2**20 and grown < 100 * 2**10, (seconds, peak, grown)
    assert error.value.source == str(config_path(folder, fmt)) and error.value.key == named
    if "layers" not in key:
        assert f"{MAX_PARAMS:,}" in str(error.value) and "parameters" in str(error.value)


# ============================================================================ each config class
@pytest.mark.parametrize("fmt, change, key, words", [
    # our dsvl_config.json: types, ranges, heads dividing widths, unknown keys
    ("ours", setter("llm.hidden_size", "64"), "llm.hidden_size", "positive integer"),
    ("ours", setter("llm.hidden_size", 64.0), "llm.hidden_size", "positive integer"),
    ("ours", setter("siglip.depth", True), "siglip.depth", "positive integer"),
    ("ours", setter("sam.width", -32), "sam.width", "positive integer"),
    ("ours", setter("aligner.depth", 0), "aligner.depth", "positive integer"),
    ("ours", setter("llm.rms_norm_eps", "tiny"), "llm.rms_norm_eps", "positive number"),
    ("ours", setter("sam.pixel_std", [0.5, 0, 0.5]), "sam.pixel_std", "3 positive numbers"),
    ("ours", setter("sam.global_attn_indexes", "1,3"), "sam.global_attn_indexes", "list of integers"),
    ("ours", setter("llm.num_heads", 3), "llm.num_heads", "must divide"),
    ("ours", setter("siglip.num_heads", 3), "siglip.num_heads", "must divide"),
    ("ours", setter("llm.hiden_size", 64), "llm.hiden_size", "did you mean 'hidden_size'"),
    ("ours", setter("colour", "red"), "colour", "unknown key"),
    ("ours", setter("sam", [1, 2]), "sam", "must be an object"),
    ("ours", setter("encoder", "clip"), "encoder", "must be one of"),
    ("ours", setter("sam", DELETE), "encoder", "needs siglip=set and sam=set"),
    # transformers config.json: the keys our reader uses, misspellings of them, transformers' own checks
    ("hf", setter("text_config.hidden_size", "x"), "text_config.hidden_size", "positive integer"),
    ("hf", setter("text_config.num_hiden_layers", 3), "text_config.num_hiden_layers", "did you mean"),
    ("hf", setter("vision_config", DELETE), "vision_config", "missing"),
    ("hf", setter("text_config.model_type", "bert"), "text_config.model_type", "'llama'"),
    ("hf", setter("text_config.attention_bias", "x"), "text_config.attention_bias", "transformers cannot read it"),
    ("hf", setter("vision_config.num_attention_heads", 3), "vision_config.num_attention_heads", "must divide"),
    ("hf", setter("high_res_vision_config.global_attn_indexes", [9]), "high_res_vision_config.global_attn_indexes",
     "outside"),
    # original config.json
    ("original", setter("language_config.num_attention_heads", 7), "language_config.num_attention_heads", "divide"),
    ("original", setter("aligner_config", DELETE), "aligner_config", "missing"),
    ("original", setter("language_config.vocab_sise", 5), "language_config.vocab_sise", "did you mean 'vocab_size'"),
    ("original", setter("vision_config.params.low_res_cfg.model_name", "clip"),
     "vision_config.params.low_res_cfg.model_name", "unknown original vision tower"),
    ("original", setter("vision_config.params.high_res_cfg.pixel_std", DELETE),
     "vision_config.params.high_res_cfg.pixel_std", "missing"),
    ("original", setter("aligner_config.params.depth", [2]), "aligner_config.params.depth", "positive integer"),
])
def test_each_config_problem_names_file_and_key(model_folders, tmp_path, fmt, change, key, words):
    folder = broken_copy(model_folders[fmt], fmt, tmp_path, change)
    with pytest.raises(ConfigError) as error:
        convert.folder_config(folder, fmt)
    assert error.value.source == str(config_path(folder, fmt)) and error.value.key == key
    assert words in error.value.problem and "\n" not in str(error.value)


@pytest.mark.parametrize("text, where, words", [
    ("[1, 2]", "", "must hold a JSON object, got a list"),
    ('{\n  "llm": }', ":2", "not valid JSON"),
    ("", ":1", "not valid JSON"),
    ("[" * 100_000, "", "not readable JSON"),
    ('{"a": ' + "9" * 5000 + "}", "", "not readable JSON"),
])
def test_json_that_is_not_a_config_object_names_the_file(tmp_path, text, where, words):
    path = tmp_path / "dsvl_config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        DSVLConfig.load(path)
    assert error.value.source == f"{path}{where}" and words in error.value.problem


def test_valid_configs_of_every_format_still_load(model_folders):
    assert convert.folder_config(model_folders["ours"], "ours") == DSVLConfig.from_name("dsvl-micro-hybrid")
    assert convert.folder_config(model_folders["hf"], "hf").llm == DSVLConfig.from_name("dsvl-micro-hybrid").llm
    assert convert.folder_config(model_folders["original"], "original").llm == DSVLConfig.from_name("dsvl-7b").llm


# ============================================================================ the commands: one line, exit 2
@pytest.mark.parametrize("command", ["info", "chat", "convert"])
@pytest.mark.parametrize("fmt, change, key", [
    ("ours", setter("llm.num_heads", "four"), "llm.num_heads"),
    ("ours", setter("llm.hidden_size", 10**9), "llm"),
    ("hf", setter("text_config", DELETE), "text_config"),
    ("original", setter("language_config", DELETE), "language_config"),
])
def test_commands_print_one_line_naming_file_and_key(model_folders, tmp_path, capsys, command, fmt, change, key):
    folder = broken_copy(model_folders[fmt], fmt, tmp_path, change)
    argv = {"info": ["info", str(folder)], "chat": ["chat", "--checkpoint", str(folder), "--prompt", "hi"],
            "convert": ["convert", str(folder), str(tmp_path / "out")]}[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "KeyError" not in err
    assert f"{config_path(folder, fmt)}: {key}: " in err
    assert "[1/3]" not in captured.out and not (tmp_path / "out").exists()  # convert stops before reading weights


# ============================================================================ YAML: stage and sweep files
def small_sweep(**changes) -> dict:
    study = {"study": "tiny", "base": {"preset": "dsvl-micro-siglip", "precision": "32-true"},
             "arms": {"a": {}, "b": {"stages.stage3_sft.learning_rate": 1e-3}}, "seeds": [0], "baseline": "a"}
    study.update(changes)
    return study


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("loader", ["stage", "sweep"])
@pytest.mark.parametrize("text, line", [
    ("model:\n  stage: [1, 2\n", 3),
    ("study: x\n  arms: y\n", 2),
    ("a: *nowhere\n", 1),
    ("a: !!python/object:os.system ls\n", 1),
])
def test_yaml_parse_errors_name_the_file_and_line(tmp_path, loader, text, line):
    path = write(tmp_path, text, f"{loader}.yaml")
    with pytest.raises(InputError) as error:
        StageSpec.load(path) if loader == "stage" else SweepSpec.load(path)
    assert error.value.source == f"{path}:{line}" and "not valid YAML" in error.value.problem
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("loader", ["stage", "sweep"])
def test_recursive_and_exploding_aliases_are_refused(tmp_path, loader):
    recursive = "a: &x [1, *x]\n"
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    load = StageSpec.load if loader == "stage" else SweepSpec.load
    for text, words in ((recursive, "recursive alias"), (laughs, "once its aliases are expanded")):
        path = write(tmp_path, text, f"{loader}.yaml")
        start = time.perf_counter()
        with pytest.raises(InputError) as error:
            load(path)
        assert time.perf_counter() - start < 2
        assert error.value.source == str(path) and words in error.value.problem


def stage_text(**changes) -> str:
    """configs/stage/stage2_joint.yaml with model.stage fields changed (``data__x`` for stage.data.x)."""
    piece = yaml.safe_load(STAGE_YAML.read_text())
    for key, value in changes.items():
        target, _, leaf = key.rpartition("__")
        (piece["model"]["stage"]["data"] if target else piece["model"]["stage"])[leaf] = value
    return yaml.safe_dump(piece, sort_keys=False)


@pytest.mark.parametrize("changes, key, words", [
    ({"steps": "ten"}, "stage.steps", "integer >= 1"),
    ({"steps": True}, "stage.steps", "integer >= 1"),
    ({"learning_rate": [1e-3]}, "stage.learning_rate", "positive number"),
    ({"min_lr_ratio": "low"}, "stage.min_lr_ratio", "in [0, 1]"),
    ({"betas": 0.9}, "stage.betas", "must be a list"),
    ({"trainable": [["aligner"]]}, "stage.trainable", "no parameter group"),
    ({"trainable": ["aligner", "alinger"]}, "stage.trainable", "did you mean 'aligner'"),
    ({"stpes": 5}, "stage.stpes", "did you mean 'steps'"),
    ({"data__families": ["chart", "maps"]}, "stage.data.families", "unknown families ['maps']"),
    ({"data__families": "chart"}, "stage.data.families", "non-empty list of task families"),
    ({"data__batch_size": 2.5}, "stage.data.batch_size", "integer >= 1"),
    ({"data__language_ratio": "most"}, "stage.data.language_ratio", "in [0, 1]"),
    ({"data__image_formats": ["qa"]}, "stage.data.image_formats", "must map formats"),
    ({"data__warmup_kind": "cubic"}, "stage.data.warmup_kind", "must be one of"),
    ({"data__task_image_size": 10**6}, "stage.data.task_image_size", "64..4096"),
    ({"data__languag_ratio": 0.5}, "stage.data.languag_ratio", "did you mean 'language_ratio'"),
    ({"data__seed": "2024-01-01"}, "stage.data.seed", "integer >= 0"),
])
def test_stage_yaml_values_name_file_and_key(tmp_path, changes, key, words):
    path = write(tmp_path, stage_text(**changes), "stage.yaml")
    with pytest.raises(InputError) as error:
        StageSpec.load(path)
    assert error.value.source == str(path) and error.value.key == key and words in error.value.problem


def test_stage_yaml_pieces_load_as_their_presets():
    from dsvl_lab.training.spec import stage_spec

    for piece in sorted((ROOT / "configs" / "stage").glob("*.yaml")):
        name, _, scale = piece.stem.partition("-")
        assert StageSpec.load(piece) == stage_spec(name, scale or "mini"), piece.name


def test_unquoted_dates_are_named_with_the_fix(tmp_path):
    text = STAGE_YAML.read_text().replace("name: stage2_joint\n    trainable", "name: 2024-01-01\n    trainable", 1)
    path = write(tmp_path, text, "stage.yaml")
    with pytest.raises(InputError) as error:
        StageSpec.load(path)
    assert error.value.key == "model.stage.name" and "quote it" in error.value.problem


@pytest.mark.parametrize("changes, key, words", [
    ({"seeds": [0, "1"]}, "seeds", "distinct integers"),
    ({"seeds": True}, "seeds", "distinct integers"),
    ({"arms": {"a": {}, "b": [1]}}, "arms.b", "mapping of overrides"),
    ({"arms": {"a": {1: 2}}}, "arms.a", "dotted names"),
    ({"baseline": ["a"]}, "baseline", "name of an arm"),
    ({"claims": {"arm": "b"}}, "claims", "must be a list"),
    ({"claims": [{"arm": "b", "metric": "mean/fine", "margin": "small"}]}, "claims[0].margin", "number >= 0"),
    ({"claims": [{"arm": "b", "metrc": "mean/fine"}]}, "claims[0].metrc", "did you mean 'metric'"),
    ({"curves": ["loss"]}, "curves[0]", "<stage>:<metric>"),
    ({"smoke": {"seed": [0]}}, "smoke.seed", "did you mean 'seeds'"),
    ({"studdy": "x"}, "studdy", "did you mean 'study'"),
    ({"arms": {"a": {"evaluation.families": ["chart", "maps"]}}, "baseline": "a"}, "arms.a", "unknown ['maps']"),
    ({"arms": {"a": {"stages.stage2_joint.steps": "many"}}, "baseline": "a"}, "arms.a", "stage.steps"),
    ({"arms": {"a": {"stages": "stage1_adaptor"}}, "baseline": "a"}, "arms.a.stages", "list of stage names"),
    ({"arms": {"a": {"model.llm.hidden_size": 10**9}}, "baseline": "a"}, "arms.a", "ceiling"),
])
def test_sweep_yaml_values_name_file_and_key(tmp_path, changes, key, words):
    path = write(tmp_path, yaml.safe_dump(small_sweep(**changes), sort_keys=False), "sweep.yaml")
    with pytest.raises(SweepConfigError) as error:
        SweepSpec.load(path)
    assert error.value.source == str(path) and error.value.key == key and words in error.value.problem
    assert "\n" not in str(error.value)


def test_sweep_cli_names_the_file_in_one_line(tmp_path, capsys):
    path = write(tmp_path, "study: x\narms: [\n", "sweep.yaml")
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}:3: not valid YAML" in err


# ============================================================================ CLI numbers
@pytest.mark.parametrize("argv, words", [
    (["chat", "--checkpoint", "x", "--prompt", "p", "--temperature", "-0.5"],
     "--temperature: must be a finite number >= 0"),
    (["chat", "--checkpoint", "x", "--prompt", "p", "--temperature", "inf"], "--temperature: must be a finite number"),
    (["chat", "--checkpoint", "x", "--prompt", "p", "--top-p", "0"], "--top-p: must be a finite number in (0, 1]"),
    (["chat", "--checkpoint", "x", "--prompt", "p", "--top-p", "1.01"], "--top-p: must be a finite number in (0, 1]"),
    (["chat", "--checkpoint", "x", "--prompt", "p", "--top-k", "-1"], "--top-k: must be >= 0"),
    (["chat", "--checkpoint", "x", "--prompt", "p", "--max-new-tokens", "0"], "--max-new-tokens: must be >= 1"),
    (["chat", "--checkpoint", "x", "--prompt", "p", "--seed", str(2**64)], "--seed: must be in 0.."),
    (["chat", "--checkpoint", "x", "--prompt", "p", "--top-k", "3.5"], "--top-k: must be a whole number"),
    (["data", "preview", "--n", "0"], "--n: must be >= 1"),
    (["data", "preview", "--image-size", "100000"], "--image-size: must be in 64..4096"),
    (["trace", "--preset", "p", "--out", "x", "--budget-gb", "0"], "--budget-gb: must be a finite number > 0"),
    (["trace", "--preset", "p", "--out", "x", "--seed", "-1"], "--seed: must be >= 0"),
    (["pretrain", "lm", "--out", "x", "--steps", "-3"], "--steps: must be >= 1"),
    (["pretrain", "lm", "--out", "x", "--lr", "nan"], "--lr: must be a finite number > 0"),
    (["pretrain", "lm", "--out", "x", "--seed", str(2**32)], "--seed: must be in 0..4294967295"),
    (["pipeline", "--out", "x", "--eval-samples", "0"], "--eval-samples: must be >= 1"),
    (["pipeline", "--out", "x", "--num-workers", "-1"], "--num-workers: must be >= 0"),
    (["sweep", "s.yaml", "--jobs", "0"], "--jobs: must be >= 1"),
    (["sweep", "s.yaml", "--seeds", "0", "-1"], "--seeds: must be >= 0"),
    (["sweep", "s.yaml", "--time-min", "0"], "--time-min: must be >= 1"),
])
def test_numeric_options_are_range_checked_before_anything_runs(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {words}" in capsys.readouterr().err


# ============================================================================ output paths
def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("out, words", [
    ("{model}/model.safetensors", "exists and is not a trace file (this command overwrites only its own)"),
    ("{model}/dsvl_config.json", "exists and is not a trace file (this command overwrites only its own)"),
    ("{model}/trace.safetensors", "inside the model folder"),
    ("{model}", "is a folder"),
])
def test_trace_out_never_overwrites_a_models_files(model_folders, tmp_path, capsys, out, words):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "dsvl_config.json"):
        (folder / name).write_bytes((model_folders["ours"] / name).read_bytes())
    before = {name: digest(folder / name) for name in ("model.safetensors", "dsvl_config.json")}
    assert main(["trace", "--model", str(folder), "--out", out.format(model=folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert {name: digest(folder / name) for name in before} == before
    assert sorted(p.name for p in folder.iterdir()) == ["dsvl_config.json", "model.safetensors"]


def test_trace_rewrites_its_own_files_but_no_others(tmp_path, capsys):
    out, page, notes = tmp_path / "t.safetensors", tmp_path / "t.html", tmp_path / "notes.txt"
    argv = ["trace", "--preset", "dsvl-micro-siglip", "--family", "doc", "--layers", "0", "--out", str(out)]
    assert main(argv + ["--html", str(page)]) == 0
    assert main(argv + ["--html", str(page)]) == 0  # its own trace file and page: rewritten
    notes.write_text("mine")
    assert main([*argv[:-1], str(notes)]) == 2
    assert main(argv + ["--html", str(notes)]) == 2
    assert notes.read_text() == "mine" and "is not a trace page" in capsys.readouterr().err


def test_data_preview_refuses_to_overwrite_a_non_png(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["data", "preview", "--family", "doc", "--n", "1", "--out", str(notes)]) == 2
    assert notes.read_text() == "mine" and "is not a PNG image" in capsys.readouterr().err


def test_convert_never_writes_over_another_models_folder(model_folders, tmp_path, capsys):
    hf_copy = tmp_path / "hf"
    hf_copy.mkdir()
    (hf_copy / "config.json").write_bytes((model_folders["hf"] / "config.json").read_bytes())
    assert main(["convert", str(model_folders["ours"]), str(hf_copy), "--force"]) == 2
    assert "holds another model" in capsys.readouterr().err and not (hf_copy / "dsvl_config.json").exists()
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    assert main(["convert", str(model_folders["ours"]), str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_text() == "mine"


# ============================================================================ fuzz: only our own errors
JUNK = ["x", "", 1.5, 0, -3, True, None, 10**12, 10**30, [], [1, "a"], {}, {"a": {"b": 1}}, float("nan")]


def paths_of(data, prefix=()):
    """Every (path tuple) into nested dicts and lists."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from paths_of(value, prefix + (key,))


def mutate_dict(data: dict, rng: random.Random) -> dict:
    """One random change: a value retyped or made huge/negative/zero, a key deleted, an unknown key added."""
    data = copy.deepcopy(data)
    path = rng.choice(list(paths_of(data)))
    *parents, leaf = path
    target = data
    for part in parents:
        target = target[part]
    action = rng.random()
    if action < 0.6:
        target[leaf] = rng.choice(JUNK)
    elif action < 0.8:
        del target[leaf]
    elif isinstance(target, dict):
        target[rng.choice(["extra", f"{leaf}s", str(leaf)[:-1] or "k"])] = rng.choice(JUNK)
    else:
        target.append(rng.choice(JUNK))
    return data


def assert_own_error(run, path: Path, whole_document: bool, what: str) -> None:
    """``run()`` succeeds or raises an InputError naming ``path`` (and a key, unless the document itself is bad)."""
    try:
        run()
    except InputError as error:
        assert error.source and error.source.split(":")[0] == str(path), (what, error)
        assert whole_document or error.key, (what, error)
        assert "\n" not in str(error), (what, error)
    except Exception as error:  # noqa: BLE001 -- the point of the test
        pytest.fail(f"{what}: {type(error).__name__}: {error}")


def test_fuzzed_model_configs_fail_only_with_input_errors(model_folders, tmp_path):
    rng = random.Random(20240601)
    valid = {fmt: read_config_json(config_path(model_folders[fmt], fmt)) for fmt in model_folders}
    rounds = {"ours": 120, "hf": 30, "original": 80}  # transformers' config classes are the slow part
    start = time.perf_counter()
    for fmt, count in rounds.items():
        folder = tmp_path / f"fuzz-{fmt}"
        folder.mkdir()
        for _ in range(count):
            data = mutate_dict(valid[fmt], rng)
            config_path(folder, fmt).write_text(json.dumps(data))
            assert_own_error(lambda: convert.folder_config(folder, fmt), config_path(folder, fmt), False,
                             f"{fmt}: {json.dumps(data)[:300]}")
    assert time.perf_counter() - start < 3


def mutate_yaml(text: str, rng: random.Random) -> str:
    """One random change to YAML text: truncated, a value swapped for junk, a garbage line, an alias."""
    lines = text.splitlines()
    action = rng.random()
    if action < 0.15:
        return text[:rng.randrange(len(text))]
    index = rng.randrange(len(lines))
    if action < 0.6:
        junk = rng.choice(["[1, 2]", "{a: 1}", "true", "-5", "0", "1e999", ".nan", "'text'", "2024-01-01", "~",
                           "!!binary aGVsbG8=", "*undefined", "&r [*r]", "99999999999999999999999", "[", "'a"])
        head, colon, _ = lines[index].partition(": ")
        lines[index] = f"{head}: {junk}" if colon else f"{lines[index].rstrip(':')}: {junk}"
    elif action < 0.8:
        lines.insert(index, rng.choice(["%%%", "  bad: [", "\tx: 1", "foo: bar", "- x", ": :", "? [a]", "&a b: *a"]))
    elif action < 0.9:
        other = rng.randrange(len(lines))
        lines[index], lines[other] = lines[other], lines[index]
    else:
        del lines[index]
    return "\n".join(lines) + "\n"


def test_fuzzed_stage_and_sweep_yaml_fail_only_with_input_errors(tmp_path):
    rng = random.Random(7)
    valid = {"stage": STAGE_YAML.read_text(), "sweep": yaml.safe_dump(small_sweep(), sort_keys=False)}
    load = {"stage": StageSpec.load, "sweep": SweepSpec.load}
    rounds = {"stage": 160, "sweep": 40}  # a sweep builds every arm's stages and config
    start = time.perf_counter()
    for kind, count in rounds.items():
        path = tmp_path / f"{kind}.yaml"
        for _ in range(count):
            text = mutate_yaml(valid[kind], rng)
            path.write_text(text)
            try:
                parsed = yaml.safe_load(text)
            except (yaml.YAMLError, ValueError):
                parsed = None
            assert_own_error(lambda: load[kind](path), path, not isinstance(parsed, dict), f"{kind}:\n{text}")
    assert time.perf_counter() - start < 3
