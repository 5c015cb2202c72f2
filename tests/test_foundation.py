"""The foundation parts: their pieces, the pretraining commands (smoke), resume, and the shipped files.

The quality tests at the bottom read the shipped bf16 files in data_samples/foundation/ and
re-measure every figure the issue sets a bar for (marker ``foundation``; about 2-3 minutes).
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import lightning as L
import numpy as np
import pytest
import torch

from dsvl_lab.artifacts import file_sha256
from dsvl_lab.cli import main
from dsvl_lab.errors import RunFolderError
from dsvl_lab.data.tasks import FAMILIES, generate_sample
from dsvl_lab.data.tasks.common import PATTERNS, recording_textures, texture_label_map
from dsvl_lab.foundation import FOUNDATION_DIR, FoundationError, from_foundation, pretrain, recipe_for, tensor_checksum
from dsvl_lab.foundation import lm, sam, siglip
from dsvl_lab.foundation.recipe import PARTS, reference_config, size_of
from dsvl_lab.foundation.shipping import load_part_weights, stored_state
from dsvl_lab.foundation.run import shipped_contrastive_siglip, shipped_encoders
from dsvl_lab.model import DSVLModel

SIZES = ("tiny", "small")


# ============================================================================ pieces
@pytest.mark.parametrize("family", FAMILIES)
def test_texture_labels_mark_exactly_the_pixels_a_texture_changed(family):
    for seed in range(10):  # a fine scene may have no striped shape ("how many? 0"): take the first with one
        with recording_textures() as log:
            fine = generate_sample(family, seed, detail="fine", image_size=256)
        labels = texture_label_map(log, 256)
        if labels.any():
            break
    assert labels.any(), "fine samples draw textures"
    # A label says which pattern: neighbouring pixels along the pattern's direction differ there.
    pixels = np.asarray(fine.image.convert("L"), dtype=np.int16)
    for k, pattern in enumerate(PATTERNS[:3], start=1):
        ys, xs = np.nonzero(labels == k)
        inner = (ys > 0) & (xs > 0)
        if inner.sum() < 20:
            continue
        ys, xs = ys[inner], xs[inner]
        across = pixels[ys, xs] - (pixels[ys - 1, xs] if pattern in ("horizontal", "checker") else pixels[ys, xs - 1])
        assert np.mean(across != 0) > 0.8
    with recording_textures() as log:
        generate_sample(family, 3, detail="coarse", image_size=256)
    assert not texture_label_map(log, 256).any()


def test_cell_labels_take_the_texture_covering_half_the_cell():
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[0:4, 0:2] = 2  # half of cell (0, 0)
    pixels[0:1, 4:8] = 3  # a quarter of cell (0, 1)
    pixels[4:8, 4:8] = 1  # all of cell (1, 1)
    assert sam.cell_labels(pixels, cell=4).tolist() == [[2, 0], [0, 1]]


def test_dense_decoder_puts_each_token_on_its_own_cells():
    decoder = sam.DenseDecoder(channels=4, grid=2, cells_per_token=3, classes=2)
    with torch.no_grad():
        decoder.norm.weight.fill_(1.0)
        decoder.linear.weight.zero_()
        decoder.linear.bias.zero_()
        decoder.linear.weight[:, 0] = 1.0  # every output copies feature 0 (after the norm)
    tokens = torch.full((1, 4, 4), -1.0)
    tokens[0, 1, 0] = 3.0  # token 1 = row 0, column 1 of the 2 x 2 grid stands out
    logits = decoder(tokens)
    assert logits.shape == (1, 2, 6, 6)
    high = logits[0, 0] > 0
    assert high[:3, 3:].all() and high.sum() == 9


def test_sigmoid_loss_matches_its_formula_and_prefers_matched_pairs():
    module = siglip.SigLIPPretraining({"image_size": 32, "patch_size": 8, "width": 32, "depth": 1, "num_heads": 2,
                                       "mlp_dim": 64}, 4096,
                                      dataclasses.asdict(recipe_for("siglip", "tiny", smoke=True)))
    images = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    t, b = module.log_temperature.exp(), module.bias
    expected = sum(-torch.nn.functional.logsigmoid((1 if i == j else -1) * (t * images[i] @ texts[j] + b))
                   for i in range(6) for j in range(6)) / 6
    assert torch.allclose(module.sigmoid_loss(images, texts), expected, atol=1e-5)
    assert module.sigmoid_loss(images, images) < module.sigmoid_loss(images, images.roll(1, 0))


def test_text_views_quote_what_is_written_and_equal_captions_are_positives():
    assert siglip.text_view('The word "music" in purple letters and the number 24.') == 'Text: "music"'
    assert siglip.text_view('A Mail window ... orange "Send" and green "Next" buttons.') == 'Text: "Send" "Next"'
    assert siglip.text_view("Two shapes on a pale background.") is None
    # A chart has nothing quoted: its view is the leading series, and every chart kind has one.
    assert siglip.text_view("A bar chart of sales with three bars (A, B, C); the yellow bar (B) is the tallest at 9.") \
        == "Tallest bar: yellow"
    assert siglip.text_view("A line chart ...; the red line ends highest and the blue line goes down.") \
        == "Highest line: red"
    assert siglip.text_view("A pie chart of orders with four slices; the blue slice is the largest.") \
        == "Largest slice: blue"
    charts = [generate_sample("chart", seed, "coarse", 64).caption for seed in range(12)]
    assert all(siglip.chart_view(caption) for caption in charts)
    captions = ['The word "cat" in red.', "A pie chart."] * 50
    views = siglip.caption_views(captions, share=0.5, seed=0)
    assert views == siglip.caption_views(captions, share=0.5, seed=0)  # seeded
    assert 10 < views.count('Text: "cat"') < 40 and views.count("A pie chart.") == 50  # no view: caption kept
    assert siglip.caption_views(captions, share=0.0, seed=0) == captions

    module = siglip.SigLIPPretraining({"image_size": 32, "patch_size": 8, "width": 32, "depth": 1, "num_heads": 2,
                                       "mlp_dim": 64}, 4096,
                                      dataclasses.asdict(recipe_for("siglip", "tiny", smoke=True)))
    images = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    texts = images[[0, 0, 2, 3]]  # images 0 and 1 share caption 0
    same = torch.eye(4, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True
    t, b = module.log_temperature.exp(), module.bias
    expected = sum(-torch.nn.functional.logsigmoid((1 if same[i, j] else -1) * (t * images[i] @ texts[j] + b))
                   for i in range(4) for j in range(4)) / 4
    assert torch.allclose(module.sigmoid_loss(images, texts, same), expected, atol=1e-5)
    assert not torch.allclose(module.sigmoid_loss(images, texts), expected, atol=1e-5)


def test_text_tower_ignores_padding():
    tower = siglip.TextTower(vocab_size=50, width=32, depth=2, max_tokens=16).eval()
    ids = torch.randint(4, 50, (1, 6))
    padded = torch.cat([ids, torch.full((1, 4), 2)], 1)
    mask = torch.ones(1, 6, dtype=torch.bool)
    padded_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.bool)], 1)
    assert torch.allclose(tower(ids, mask), tower(padded, padded_mask), atol=1e-5)


def test_text_batches_are_a_function_of_the_step():
    from dsvl_lab.processor import DSVLProcessor

    processor = DSVLProcessor.from_config(reference_config("tiny"))
    recipe = recipe_for("lm", "tiny", smoke=True)
    first, second = lm.TextWindows(recipe, processor), lm.TextWindows(recipe, processor)
    first.setup(), second.setup()
    assert torch.equal(first.train_batch(5)["input_ids"], second.train_batch(5)["input_ids"])
    assert not torch.equal(first.train_batch(5)["input_ids"], first.train_batch(6)["input_ids"])
    assert (first.train_batch(0)["input_ids"][:, 0] == processor.bos_token_id).all()


@pytest.mark.parametrize("call, message", [
    (lambda: recipe_for("vit", "tiny"), "unknown part"),
    (lambda: recipe_for("lm", "tiny", lr=-1.0), "lr must be positive"),
    (lambda: recipe_for("lm", "tiny", steps=0), "steps must be at least 1"),
    (lambda: recipe_for("lm", "tiny", dropout=0.1), "unknown recipe option"),
    (lambda: from_foundation("dsvl-micro-hybrid"), "dsvl-tiny-* and dsvl-small-*"),
    (lambda: from_foundation("dsvl-7b"), "dsvl-tiny-* and dsvl-small-*"),
])
def test_bad_requests_name_the_problem(call, message):
    with pytest.raises(FoundationError, match=message.replace("*", r"\*")):
        call()


# ============================================================================ the commands (smoke)
@pytest.mark.parametrize("part", ["lm", "siglip", "sam"])
def test_pretrain_smoke_writes_weights_and_a_card_that_load(part, tmp_path, capsys):
    out = tmp_path / part
    assert main(["pretrain", part, "--preset", "dsvl-tiny-hybrid", "--out", str(out),
                 "--smoke", "--no-progress"]) == 0
    card = json.loads((out / f"{part}.json").read_text())
    assert card["smoke"] and card["recipe"]["steps"] == 6
    assert (out / f"{part}.md").read_text().startswith(f"# dsvl-tiny foundation {part}")
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / f"{part}_curve.png").is_file()
    submodule = DSVLModel.from_name("dsvl-tiny-hybrid").get_submodule(PARTS[part])
    load_part_weights(submodule, out / f"{part}.safetensors", card["export"])
    assert tensor_checksum(stored_state(submodule)) == card["export"]["tensor_sha256"]
    assert f"# dsvl-tiny foundation {part}" in capsys.readouterr().out


def test_smoke_runs_are_never_shipped(tmp_path):
    with pytest.raises(FoundationError, match="not shipped"):
        pretrain("lm", "dsvl-tiny-hybrid", tmp_path / "lm", smoke=True, ship_to=tmp_path / "shipped", progress=False)
    assert not (tmp_path / "shipped").exists()


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    whole = pretrain("lm", "dsvl-tiny-hybrid", tmp_path / "whole", smoke=True, progress=False)
    pretrain("lm", "dsvl-tiny-hybrid", tmp_path / "parts", smoke=True, progress=False, callbacks=(_StopAt(3),))
    assert torch.load(tmp_path / "parts" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    resumed = pretrain("lm", "dsvl-tiny-hybrid", tmp_path / "parts", smoke=True, progress=False)
    assert resumed["export"]["tensor_sha256"] == whole["export"]["tensor_sha256"]
    # Run again on the finished run (as `--ship` after the fact does): the card keeps the time already
    # spent and adds the re-measuring, instead of reporting the re-measuring alone.
    again = pretrain("lm", "dsvl-tiny-hybrid", tmp_path / "parts", smoke=True, progress=False)
    assert all(again["wall_time_s"][phase] >= seconds for phase, seconds in resumed["wall_time_s"].items())
    assert again["wall_time_total_s"] > resumed["wall_time_total_s"]


def test_resuming_with_another_recipe_is_refused(tmp_path):
    pretrain("lm", "dsvl-tiny-hybrid", tmp_path / "run", smoke=True, progress=False, callbacks=(_StopAt(3),))
    with pytest.raises(RunFolderError, match=r"different recipe: recipe\.seed \(0 -> 1\)"):
        pretrain("lm", "dsvl-tiny-hybrid", tmp_path / "run", smoke=True, progress=False, seed=1)


# ============================================================================ the shipped files
def _card(size: str, part: str) -> dict:
    return json.loads((FOUNDATION_DIR / size / f"{part}.json").read_text())


def test_shipped_foundation_stays_under_60_mb_and_is_complete():
    files = [p for p in FOUNDATION_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60 * 2**20
    for size in SIZES:
        for part in PARTS:
            card = _card(size, part)
            assert not card["smoke"] and card["size"] == size
            assert (FOUNDATION_DIR / size / f"{part}.md").is_file()
            assert file_sha256(FOUNDATION_DIR / size / f"{part}.safetensors") == card["export"]["file_sha256"]


def test_full_tiny_pretraining_took_under_an_hour():
    total = sum(_card("tiny", part)["wall_time_total_s"] for part in PARTS)
    print(f"tiny foundation pretraining: {total / 60:.1f} min on this machine kind")
    assert total < 3600


@pytest.mark.parametrize("preset", ["dsvl-tiny-hybrid", "dsvl-tiny-siglip", "dsvl-tiny-sam", "dsvl-small-hybrid"])
def test_from_foundation_loads_every_part_bit_exactly_and_a_fresh_aligner(preset):
    torch.manual_seed(0)
    model = from_foundation(preset)
    torch.manual_seed(0)
    fresh = DSVLModel.from_name(preset)
    size = size_of(preset)
    parts = {"lm": model.language_model}
    if model.config.siglip is not None:
        parts["siglip"] = model.vision_model.low
    if model.config.sam is not None:
        parts["sam"] = model.vision_model.high
    assert set(model.foundation_parts) == set(parts)
    for part, module in parts.items():
        assert tensor_checksum(stored_state(module)) == _card(size, part)["export"]["tensor_sha256"]
    for name, value in fresh.aligner.state_dict().items():
        assert torch.equal(model.aligner.state_dict()[name], value), "the aligner is a fresh initialisation"
    assert not torch.equal(model.language_model.lm_head.weight, fresh.language_model.lm_head.weight)


def test_an_altered_file_is_refused(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(FOUNDATION_DIR / "tiny", folder)
    data = bytearray((folder / "lm.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (folder / "lm.safetensors").write_bytes(bytes(data))
    with pytest.raises(FoundationError, match="checksum"):
        from_foundation("dsvl-tiny-hybrid", root=folder)
    (folder / "sam.json").unlink()
    with pytest.raises(FoundationError, match="no model card"):
        from_foundation("dsvl-tiny-hybrid", root=folder, parts=("sam",))


# ============================================================================ quality of the shipped files
@pytest.mark.foundation
@pytest.mark.parametrize("size", SIZES)
def test_shipped_language_model_beats_unigram_3x_and_cloze_chance_by_20_points(size):
    model = from_foundation(f"dsvl-{size}-hybrid", parts=("lm",))
    from dsvl_lab.processor import DSVLProcessor

    figures = lm.evaluate(model.language_model.eval(), DSVLProcessor.from_config(model.config))
    print(f"{size} LM: perplexity {figures['perplexity']:.1f} vs unigram {figures['unigram_perplexity']:.1f} "
          f"({figures['unigram_ratio']:.2f}x); cloze {figures['cloze_accuracy']:.3f} "
          f"vs chance {figures['cloze_chance']}")
    assert figures["perplexity"] == pytest.approx(_card(size, "lm")["figures"]["perplexity"], rel=1e-3)
    assert figures["unigram_ratio"] >= 3.0
    assert figures["cloze_points_above_chance"] >= 20.0


@pytest.mark.foundation
@pytest.mark.parametrize("size", SIZES)
def test_shipped_siglip_retrieves_held_out_captions_zero_shot(size):
    from dsvl_lab.processor import DSVLProcessor

    config = reference_config(size)
    card = _card(size, "siglip")
    module = shipped_contrastive_siglip(size)
    n = siglip.RETRIEVAL_CANDIDATES * siglip.RETRIEVAL_GROUPS
    pairs = siglip.heldout_pairs(n, config.sam.image_size, config.siglip.image_size)
    figures = siglip.retrieval_accuracy(module, DSVLProcessor.from_config(config), pairs)
    print(f"{size} SigLIP zero-shot retrieval among 100 held-out coarse captions: top-1 {figures['top1']:.3f} "
          f"(chance 0.01) over {figures['images']} images")
    assert figures["top1"] == pytest.approx(card["figures"]["top1"], abs=0.01)
    assert figures["top1"] >= 0.5


@pytest.mark.foundation
@pytest.mark.parametrize("size", SIZES)
def test_shipped_sam_sees_fine_detail_at_least_twice_as_well_as_siglip(size):
    config = reference_config(size)
    card = _card(size, "sam")
    encoder, low = shipped_encoders(size)
    extra = card["recipe"]["extra"]
    heldout = sam.heldout_fine(extra["probe_eval_pool"], config.sam.image_size)
    train = sam.build_dense(sam.dense_jobs(range(10**6, 10**6 + extra["probe_train_pool"]), config.sam.image_size,
                                           fine_share=1.0), "probe pool")
    figures = sam.probe_comparison(encoder, low, train, heldout)
    print(f"{size} dense texture probe on held-out fine images: SAM mIoU {figures['sam_miou']:.3f}, "
          f"SigLIP upsampled {figures['siglip_miou']:.3f}, ratio {figures['ratio']:.1f}x")
    assert figures["ratio"] >= 2.0
    assert figures["sam_miou"] == pytest.approx(card["figures"]["sam_miou"], abs=0.02)
