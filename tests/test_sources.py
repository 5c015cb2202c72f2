"""Training on your own data (stage.data.sources): formats, the mixture, held-out rows, bad rows, resume."""
from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from dsvl_lab.config import DSVLConfig
from dsvl_lab.data.corpus import train_texts
from dsvl_lab.data.jsonl import DataError
from dsvl_lab.data.mixing import ModalityPlan, WarmupSchedule
from dsvl_lab.data.sources import SourceMixture, SourceSpec, is_held_out, open_rows
from dsvl_lab.data.sources.convert import as_conversation, convert, read_sample_rows
from dsvl_lab.data.sources.records import image_record, llava_tag_to_placeholder
from dsvl_lab.data.sources.rows import json_array_rows
from dsvl_lab.data.stage_data import StageBatches, StageData, planned_counts
from dsvl_lab.errors import InputError
from dsvl_lab.processor import DSVLProcessor

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"
PRESET = "dsvl-micro-hybrid"
MODEL_INPUTS = ("input_ids", "labels", "attention_mask", "pixel_values")


@pytest.fixture(scope="module")
def processor():
    return DSVLProcessor.from_config(DSVLConfig.from_name(PRESET))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """The shipped photos, copied with 16 of their samples (images must sit inside the source's folder)."""
    folder = tmp_path_factory.mktemp("photos")
    shutil.copytree(PHOTOS / "images", folder / "images")
    rows = read_sample_rows(PHOTOS / "photos.jsonl")[:16]
    (folder / "sixteen.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    convert(folder / "sixteen.jsonl", "jsonl", folder / "samples.jsonl")
    convert(folder / "sixteen.jsonl", "llava", folder / "llava.json")
    convert(folder / "sixteen.jsonl", "hf", folder / "hf")
    convert(folder / "sixteen.jsonl", "parquet", folder / "table.parquet")
    texts = train_texts()[:200]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return folder


def batches_of(data: StageData, processor, steps: int = 4) -> list[dict]:
    source = StageBatches(data, processor, None, steps)
    return [source[step] for step in range(steps)]


def one_source(kind: str, path: Path, **changes) -> StageData:
    source = {"kind": kind, "path": str(path), "name": "photos", "eval_share": 0.0}
    settings = dict(name="stage3_sft", language_ratio=0.0, sources=[source], batch_size=4, seq_len=512)
    return StageData(**{**settings, **changes})


# ============================================================================ formats
def test_the_same_16_samples_in_every_format_give_identical_batches(photo_folder, processor):
    reference = batches_of(one_source("samples", photo_folder / "samples.jsonl"), processor)
    assert sum(batch["pixel_values"].shape[0] for batch in reference) == 16
    for kind, path in (("llava", "llava.json"), ("hf", "hf"), ("parquet", "table.parquet")):
        batches = batches_of(one_source(kind, photo_folder / path), processor)
        for ours, theirs in zip(reference, batches):
            for key in MODEL_INPUTS:
                assert torch.equal(ours[key], theirs[key]), (kind, key)


def test_llava_rows_become_our_conversations(photo_folder):
    rows = json.loads((photo_folder / "llava.json").read_text())
    assert rows[0]["conversations"][0]["value"].startswith("<image>\n")
    record = image_record(rows[0], "llava.json:2", photo_folder)
    first = read_sample_rows(photo_folder / "sixteen.jsonl")[0]
    assert record.conversation == as_conversation(first)
    assert llava_tag_to_placeholder("What is it?\n<image>") == "What is it?<image_placeholder>"
    # an image row without a tag gets the placeholder first in its first user turn, as LLaVA's loader does
    untagged = {"image": rows[0]["image"], "conversations": [{"from": "human", "value": "Hi"},
                                                               {"from": "gpt", "value": "Hello"}]}
    assert image_record(untagged, "x:1", photo_folder).conversation[0]["content"] == "<image_placeholder>Hi"


def test_a_json_list_is_indexed_in_one_pass_with_line_numbers(tmp_path):
    tricky = [{"id": "a", "text": "brace } and bracket ] in a string"}, {"id": "b", "text": 'quote \\" and \\\\'},
              {"id": "c", "nested": [{"x": [1, 2]}, {"y": "{"}]}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(tricky, indent=2))
    rows = json_array_rows(path)
    assert len(rows) == 3
    assert [rows.get(i)[0] for i in range(3)] == tricky
    lines = path.read_text().splitlines()
    for index in range(3):
        line = int(rows.get(index)[1].rsplit(":", 1)[1])
        assert lines[line - 1].strip() == "{"
    (tmp_path / "cut.json").write_text(json.dumps(tricky)[:-5])
    with pytest.raises(DataError, match="not a complete JSON list"):
        json_array_rows(tmp_path / "cut.json")


def test_text_sources_read_jsonl_txt_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\nstill first\n\n\nsecond\n")
    rows = open_rows("text", tmp_path / "a.txt")
    assert [rows.get(i)[0]["text"] for i in range(len(rows))] == ["first paragraph\nstill first", "second"]
    assert rows.get(1)[1].endswith("a.txt:5")
    (tmp_path / "docs").mkdir()
    for name in ("x", "y"):
        (tmp_path / "docs" / f"{name}.txt").write_text(f"document {name}")
    folder = open_rows("text", tmp_path / "docs")
    assert [folder.get(i)[0]["text"] for i in range(2)] == ["document x", "document y"]


def test_source_specs_are_checked_and_name_the_key():
    with pytest.raises(InputError, match=r"sources\[.*\]\.kind.*one of"):
        StageData(sources=[{"kind": "imagenet", "path": "x"}])
    with pytest.raises(InputError, match="give its path"):
        StageData(sources=[{"kind": "llava"}])
    with pytest.raises(InputError, match="unknown keys"):
        StageData(sources=[{"kind": "world", "wieght": 2}])
    with pytest.raises(InputError, match="distinct 'name'"):
        StageData(sources=[{"kind": "text", "path": "a/c.jsonl"}, {"kind": "text", "path": "b/c.jsonl"}])
    with pytest.raises(InputError, match="on_bad_sample"):
        StageData(on_bad_sample="ignore")
    missing = StageData(sources=[{"kind": "llava", "path": "/nowhere/data.json"}])  # a recipe still loads
    with pytest.raises(DataError, match="nothing is downloaded"):
        SourceMixture(missing.sources, 0)


def test_specs_without_sources_keep_their_dict_and_hash():
    plain = StageData()
    assert "sources" not in plain.to_dict() and "on_bad_sample" not in plain.to_dict()
    with_source = StageData(sources=[{"kind": "world", "weight": 2}])
    assert with_source.to_dict()["sources"] == [{"kind": "world", "weight": 2}]
    assert StageData(**with_source.to_dict()) == with_source


# ============================================================================ the mixture
def mixed_stage(photo_folder: Path, **changes) -> StageData:
    """Stage 2 mixing the world, a LLaVA file and a text corpus: 70% text, then world and photos 1:2."""
    sources = [{"kind": "world", "weight": 1.0},
               {"kind": "llava", "path": str(photo_folder / "llava.json"), "name": "photos", "weight": 2.0,
                "eval_share": 0.25},
               {"kind": "text", "path": str(photo_folder / "corpus.jsonl"), "name": "corpus"}]
    settings = dict(name="stage2_joint", language_ratio=0.7, warmup_steps=200, warmup_kind="linear", batch_size=16,
                    seq_len=256, sources=sources, families=("chart", "scene"), task_image_size=64)
    settings.update(changes)
    return StageData(**settings)


def test_shares_and_source_counts_follow_the_spec_over_10000_draws(photo_folder):
    data = mixed_stage(photo_folder)
    counts = planned_counts(data, steps=625)  # 625 batches of 16: 10,000 draws, 200 steps of warm-up
    drawn, expected = counts["drawn"], counts["expected"]
    assert drawn["text"] + drawn["image"] == 10_000
    for key in ("text", "image", "world", "photos", "corpus"):
        assert abs(drawn[key] - expected[key]) / 10_000 <= 0.01, (key, drawn[key], expected[key])
    # the warm-up is followed: 100% text at first, the target share at the end
    assert expected["text"] / 10_000 > 0.7 + 0.04
    flat = planned_counts(dataclasses.replace(data, warmup_steps=0, warmup_kind="none"), steps=625)
    assert abs(flat["drawn"]["text"] / 10_000 - 0.7) <= 0.01
    assert abs(flat["drawn"]["photos"] / 10_000 - 0.3 * 2 / 3) <= 0.01


def test_the_weyl_choice_is_even_over_every_prefix():
    specs = tuple(SourceSpec(kind="world", name=f"s{i}", weight=w) for i, w in enumerate((1, 2, 7)))
    mixture = SourceMixture(specs, seed=3)
    counts = {"s0": 0, "s1": 0, "s2": 0}
    for n in range(5000):
        counts[mixture.choose("image", n).label] += 1
        for label, share in mixture.shares("image").items():
            assert abs(counts[label] - (n + 1) * share) <= 4  # a random choice would wander by sqrt(n)


def test_rank_counts_earlier_draws_of_the_same_modality():
    plan = ModalityPlan(WarmupSchedule(0.3, steps=40, kind="linear"), seed=5)
    seen = {"text": 0, "image": 0}
    for draw in range(400):
        modality = plan.modality(draw)
        assert plan.rank(draw) == seen[modality]
        seen[modality] += 1


def test_batches_carry_what_the_plan_says(photo_folder, processor):
    data = mixed_stage(photo_folder, batch_size=4, warmup_steps=4)
    batches = batches_of(data, processor, steps=8)
    counts = planned_counts(data, steps=8)["drawn"]
    totals: dict[str, int] = {}
    for batch in batches:
        for label, count in batch["source_counts"].items():
            totals[label] = totals.get(label, 0) + count
        assert batch["input_ids"].shape[1] <= 256
        if batch["n_text"]:  # packed text: every row full, no padding
            assert bool(batch["attention_mask"].all())
    assert totals == {key: value for key, value in counts.items() if key not in ("text", "image") and value}


def test_ddp_ranks_split_the_same_global_batch(photo_folder, processor):
    data = mixed_stage(photo_folder, batch_size=2, warmup_steps=0, language_ratio=0.5, group_by_modality=False)
    whole = StageBatches(dataclasses.replace(data, batch_size=4), processor, None, 4)
    ranks = [StageBatches(data, processor, None, 4, rank=rank, world_size=2) for rank in range(2)]
    for step in range(3):
        joined = [ranks[0][step]["input_ids"].tolist(), ranks[1][step]["input_ids"].tolist()]
        rows = [row for part in joined for row in part]
        expected = whole[step]["input_ids"]
        # left padding differs between a batch of 4 and two of 2: compare the unpadded rows
        assert [[t for t in row if t != processor.pad_token_id] for row in rows] == \
               [[t for t in row.tolist() if t != processor.pad_token_id] for row in expected]


# ============================================================================ held-out rows
def test_training_never_reads_held_out_rows_and_validation_reads_only_them(photo_folder):
    (source,) = SourceMixture((SourceSpec(kind="llava", path=str(photo_folder / "llava.json"), eval_share=0.25),),
                              seed=0).sources
    held_out = {row for row in range(len(source.rows)) if is_held_out(row, 0.25)}
    assert 0 < len(held_out) < 16
    rng = random.Random(0)
    assert {source.pick(rng, "train") for _ in range(500)} == set(range(16)) - held_out
    assert {source.pick(rng, "eval") for _ in range(500)} == held_out


def test_validation_batches_come_from_held_out_rows(photo_folder):
    from dsvl_lab.data.datamodule import DSVLDataModule

    data = mixed_stage(photo_folder, batch_size=2, warmup_steps=0)
    dm = DSVLDataModule(PRESET, data, total_steps=4, val_batches=1)
    validation = dm.validation_batches()
    assert [batch["n_text"] > 0 for batch in validation] == [True, False]
    assert set(validation[1]["source_counts"]) <= {"world", "photos"}


# ============================================================================ bad rows
@pytest.fixture()
def broken_source(photo_folder, tmp_path) -> Path:
    """A LLaVA JSONL file with a good row, a line that is not JSON, a missing image and an undecodable one."""
    shutil.copytree(photo_folder / "images", tmp_path / "images")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    good = json.loads((photo_folder / "llava.json").read_text())[0]
    lines = [json.dumps(good), "{not json", json.dumps({**good, "image": "images/missing.jpg"}),
             json.dumps({**good, "image": "images/broken.jpg"})]
    path = tmp_path / "user.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_rows_are_skipped_and_counted_with_file_and_line(broken_source, processor):
    data = one_source("llava", broken_source, on_bad_sample="skip", batch_size=8)
    batch = StageBatches(data, processor, None, 1)[0]
    assert batch["pixel_values"].shape[0] == 8  # every sample is the good row: the bad ones were skipped
    reasons = {(bad["where"], bad["reason"]) for bad in batch["bad_samples"]}
    assert reasons == {(f"{broken_source}:2", "not valid JSON"), (f"{broken_source}:3", "missing image"),
                       (f"{broken_source}:4", "unreadable image")}


def test_bad_rows_are_refused_with_the_same_message(broken_source, processor):
    skipped = StageBatches(one_source("llava", broken_source, on_bad_sample="skip", batch_size=8), processor, None, 1)
    messages = {bad["where"]: bad["message"] for bad in skipped[0]["bad_samples"]}
    strict = StageBatches(one_source("llava", broken_source, batch_size=8), processor, None, 1)
    with pytest.raises(DataError) as raised:
        strict[0]
    where = raised.value.source
    assert str(raised.value).startswith(messages[where])
    assert "on_bad_sample: skip" in str(raised.value)


def test_the_datamodule_counts_skipped_rows_and_sources(broken_source):
    from dsvl_lab.data.datamodule import DSVLDataModule

    dm = DSVLDataModule(PRESET, one_source("llava", broken_source, on_bad_sample="skip", batch_size=8),
                        total_steps=2, val_batches=1)
    for step in range(2):
        batch = dm.train_batches[step]
        dm.count_sources(batch)
    assert dm.source_seen == {"photos": 16}
    assert sum(dm.bad_samples.values()) >= 3 and set(dm.bad_samples) <= {"not valid JSON", "missing image",
                                                                          "unreadable image"}
    state = dm.state_dict()
    other = DSVLDataModule(PRESET, one_source("llava", broken_source, on_bad_sample="skip", batch_size=8),
                           total_steps=2)
    other.load_state_dict(state)
    assert other.bad_samples == dm.bad_samples and other.bad_examples == dm.bad_examples
    world_only = dataclasses.replace(one_source("llava", broken_source, batch_size=8), sources=[{"kind": "world"}])
    changed = DSVLDataModule(PRESET, world_only, total_steps=2)
    with pytest.raises(ValueError, match="sources"):
        changed.load_state_dict(state)


# ============================================================================ a real stage, killed and resumed
class Killed(RuntimeError):
    pass


class StopAt:
    """A callback that raises after step ``k``, as a kill would end the run (the step-3 checkpoint survives)."""

    def __new__(cls, step: int):
        import lightning as L

        class _StopAt(L.Callback):
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                if trainer.global_step >= step:
                    raise Killed(f"killed after step {step}")

        return _StopAt()


def last_logged(run: Path) -> dict:
    import csv

    last: dict = {}
    for row in csv.DictReader((run / "logs" / "metrics.csv").open()):
        last.update({key: value for key, value in row.items() if value})
    return last


@pytest.mark.slow
def test_a_killed_mixed_stage_resumes_bit_exact(photo_folder, tmp_path):
    import lightning as L

    from dsvl_lab.artifacts import tensor_checksum
    from dsvl_lab.model import DSVLModel
    from dsvl_lab.training import run_stage, stage_spec

    torch.set_num_threads(2)
    data = mixed_stage(photo_folder, batch_size=4, warmup_steps=2, language_ratio=0.5)
    spec = stage_spec("stage2_joint", steps=6).replace(
        starts_from="random", warmup_steps=1,
        data={key: getattr(data, key) for key in ("batch_size", "warmup_steps", "language_ratio", "seq_len",
                                                  "families", "task_image_size")}
        | {"sources": [source.to_dict() for source in data.sources]})
    options = dict(progress=False, eval_samples=2, checkpoint_every=3, language_eval=False, throughput=False,
                   num_workers=0, val_every=3, log_every_n_steps=1)
    L.seed_everything(0)
    whole = run_stage(PRESET, spec, tmp_path / "whole", **options)
    L.seed_everything(0)
    with pytest.raises(Killed):
        run_stage(PRESET, spec, tmp_path / "killed", extra_callbacks=[StopAt(4)], **options)
    L.seed_everything(0)
    resumed = run_stage(PRESET, spec, tmp_path / "killed", **options)
    assert resumed.resumed and resumed.steps == whole.steps == 6

    def weights(run):
        return tensor_checksum(DSVLModel.from_pretrained(run.model_folder).state_dict())

    assert weights(resumed) == weights(whole)
    logged = [last_logged(tmp_path / name) for name in ("whole", "killed")]
    mixture = [{key: value for key, value in row.items() if key.startswith(("data/", "val/"))} for row in logged]
    assert mixture[0] == mixture[1]
    assert {"data/source/world", "data/source/photos", "data/source/corpus"} <= set(mixture[0])


# ============================================================================ the shipped photos, the CLI, the recipe
def test_the_shipped_photo_set_is_clean():
    from dsvl_lab.data.jsonl import check_jsonl

    reader = check_jsonl(PHOTOS / "photos.jsonl")
    assert reader.good == 36 and not reader.skipped


def test_loader_workers_read_the_same_batches(photo_folder):
    from dsvl_lab.data.datamodule import DSVLDataModule

    data = mixed_stage(photo_folder, batch_size=2, warmup_steps=0)
    dm = DSVLDataModule(PRESET, data, total_steps=4, num_workers=2)
    in_process = [dm.train_batches[step]["input_ids"] for step in range(4)]
    assert all(torch.equal(a, b["input_ids"]) for a, b in zip(in_process, dm.train_dataloader()))


def test_data_convert_cli_writes_a_source_a_stage_reads(photo_folder, tmp_path, capsys, processor):
    from dsvl_lab.cli import main

    assert main(["data", "convert", str(photo_folder / "sixteen.jsonl"), "--to", "llava",
                 "--out", str(tmp_path / "out.json")]) == 0
    assert "image_folder" in capsys.readouterr().out
    data = one_source("llava", tmp_path / "out.json")
    data = dataclasses.replace(data, sources=[{**data.sources[0].to_dict(), "image_folder": str(photo_folder)}])
    assert batches_of(data, processor, steps=1)[0]["pixel_values"].shape[0] == 4


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("size", ["7b", "1.3b"])
@pytest.mark.parametrize("stage", ["stage1_adaptor", "stage2_joint", "stage3_sft"])
def test_the_real_scale_recipe_resolves_with_placeholder_paths(stage, size):
    from dsvl_lab.training.spec import load_pieces

    number = stage[len("stage")]
    preset, spec = load_pieces([CONFIGS / "model" / f"dsvl-{size}.yaml",
                                CONFIGS / "stage" / f"{stage}-paper-{size}.yaml",
                                CONFIGS / "data" / f"own-stage{number}.yaml"])
    assert preset == f"dsvl-{size}" and spec.name == stage
    assert spec.data.sources and all(source.path.startswith("/path/to/") for source in spec.data.sources)
    assert spec.data.on_bad_sample == "skip"
    assert spec.data.batch_size == {"7b": {"stage1_adaptor": 256, "stage2_joint": 2304, "stage3_sft": 256},
                                    "1.3b": {"stage1_adaptor": 256, "stage2_joint": 1024,
                                             "stage3_sft": 256}}[size][stage]


def test_flops_costs_the_recipe_before_it_runs(capsys):
    from dsvl_lab.cli import main

    pieces = ["configs/model/dsvl-7b.yaml", "configs/stage/stage2_joint-paper-7b.yaml", "configs/data/own-stage2.yaml"]
    assert main(["flops", *[arg for piece in pieces for arg in ("--config", str(CONFIGS.parent / piece))]]) == 0
    out = capsys.readouterr().out
    assert "42,000 steps x 2,304 sequences x 4,096 tokens" in out and "GPU-days" in out
    assert "/path/to/your/text_corpus.jsonl" in out


@pytest.mark.slow
def test_fit_print_config_resolves_the_recipe_with_the_fsdp_piece():
    import subprocess
    import sys

    pieces = ["model/dsvl-7b.yaml", "stage/stage2_joint-paper-7b.yaml", "data/own-stage2.yaml", "trainer/fsdp-7b.yaml"]
    configs = [arg for piece in pieces for arg in ("--config", str(CONFIGS / piece))]
    command = [sys.executable, "-m", "dsvl_lab.cli", "fit", *configs, "--print_config"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "/path/to/your/multimodal_pretraining.json" in done.stdout
    assert "DSVLFSDPStrategy" in done.stdout and "use_orig_params: true" in done.stdout


def test_data_check_kind_reads_every_row_as_a_stage_would(broken_source, capsys):
    from dsvl_lab.cli import main

    assert main(["data", "check", str(broken_source), "--kind", "llava"]) == 0
    out = capsys.readouterr().out
    assert "4 rows, 1 good, 3 bad" in out
    assert f"{broken_source}:3: image: missing image" in out and f"{broken_source}:2: line: not valid JSON" in out


def test_planning_never_indexes_a_file(photo_folder, monkeypatch):
    from dsvl_lab.data.sources import mixture

    def refuse(kind, path):
        raise AssertionError(f"indexed {path}")

    monkeypatch.setattr(mixture, "open_rows", refuse)
    counts = planned_counts(mixed_stage(photo_folder), steps=50)["drawn"]
    assert counts["text"] + counts["image"] == 800
