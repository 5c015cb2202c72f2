"""Folders in our, the transformers and the original DeepSeek-VL format; loading errors; atomic saves."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsvl_lab import convert
from dsvl_lab.config import DSVLConfig
from dsvl_lab.errors import ConfigError
from dsvl_lab.model import DSVLModel

from conftest import ORIGINAL_7B, make_batch, randomize_


def logits(model, batch):
    """Logits at real (non-padding) positions: what a padding position predicts is not defined."""
    with torch.no_grad():
        return model(**batch).logits[batch["attention_mask"].bool()]


@pytest.mark.parametrize("name", ["dsvl-micro-siglip", "dsvl-micro-sam", "dsvl-micro-hybrid"])
def test_our_format_round_trips_bit_exactly(tmp_path, name):
    model = randomize_(DSVLModel.from_name(name)).eval()
    model.save_pretrained(tmp_path)
    loaded = DSVLModel.from_pretrained(tmp_path)
    assert loaded.config == model.config
    batch = make_batch(model.config)
    assert torch.equal(logits(model, batch), logits(loaded, batch))


@pytest.mark.parametrize("name", ["dsvl-micro-siglip", "dsvl-micro-hybrid"])
def test_transformers_folder_loads_and_matches(tmp_path, name):
    hf_model = convert.to_hf(randomize_(DSVLModel.from_name(name, pixel_input="normalized")))
    hf_model.save_pretrained(tmp_path)
    ours = DSVLModel.from_pretrained(tmp_path, pixel_input="normalized")
    batch = make_batch(ours.config, pad_first=2, normalized=True)
    torch.testing.assert_close(logits(hf_model, batch), logits(ours, batch), atol=1e-4, rtol=1e-4)


def test_transformers_4x_siglip_prefix_is_accepted(tmp_path):
    """Converted Hub files keep the inner 'vision_model.vision_model.' prefix of transformers 4.x."""
    hf_model = convert.to_hf(randomize_(DSVLModel.from_name("dsvl-micro-hybrid", pixel_input="normalized")))
    hf_model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state = {k.replace("model.vision_model.", "model.vision_model.vision_model."): v for k, v in state.items()}
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = DSVLModel.from_pretrained(tmp_path, pixel_input="normalized")
    batch = make_batch(ours.config, normalized=True)
    torch.testing.assert_close(logits(hf_model, batch), logits(ours, batch), atol=1e-4, rtol=1e-4)


def write_original_folder(model: DSVLModel, folder) -> None:
    """A checkpoint under the original key names, with the original's unused tensors added."""
    config = model.config
    state = convert.our_state_to_original(model.state_dict(), config)
    low = "vision_model.vision_tower." if config.encoder == "siglip" else "vision_model.vision_tower_low.vision_tower."
    width = config.siglip.width
    state[low + "attn_pool.latent"] = torch.randn(1, 1, width)
    state[low + "attn_pool.q.weight"] = torch.randn(width, width)
    if config.encoder == "hybrid":
        state["vision_model.high_layer_norm.weight"] = torch.ones(config.sam.output_channels)
        state["vision_model.low_layer_norm.weight"] = torch.ones(width)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "multi_modality"}))


@pytest.mark.parametrize("name", ["dsvl-micro-siglip", "dsvl-micro-hybrid"])
def test_original_format_loads_drops_unused_tensors_and_matches(tmp_path, capsys, name):
    model = randomize_(DSVLModel.from_name(name)).eval()
    write_original_folder(model, tmp_path)
    loaded = DSVLModel.from_pretrained(tmp_path, config=model.config)
    assert "dropping" in capsys.readouterr().out
    batch = make_batch(model.config)
    assert torch.equal(logits(model, batch), logits(loaded, batch))


def test_original_key_names_follow_the_facts_sheet():
    """The facts sheet is docs/deepseek_vl_facts.md; the original checkpoint's keys are its section 3.1."""
    with torch.device("meta"):
        keys = convert.our_state_to_original(DSVLModel.from_name("dsvl-7b").state_dict(),
                                             DSVLConfig.from_name("dsvl-7b"))
    assert "vision_model.vision_tower_high.vision_tower.blocks.11.attn.rel_pos_h" in keys
    assert "vision_model.vision_tower_high.vision_tower.neck_hd.3.weight" in keys
    assert "vision_model.vision_tower_high.vision_tower.hd_alpha_downsamples" in keys
    assert "vision_model.vision_tower_low.vision_tower.blocks.23.attn.qkv.weight" in keys
    assert "aligner.high_up_proj.weight" in keys and "aligner.layers.1.weight" in keys
    assert "language_model.lm_head.weight" in keys
    with torch.device("meta"):
        keys_13 = convert.our_state_to_original(DSVLModel.from_name("dsvl-1.3b").state_dict(),
                                                DSVLConfig.from_name("dsvl-1.3b"))
    assert "vision_model.vision_tower.pos_embed" in keys_13 and "aligner.layers.2.weight" in keys_13


def test_release_like_original_config_parses_to_the_7b_layout():
    config = convert.config_from_original(ORIGINAL_7B)
    with torch.device("meta"):
        assert DSVLModel(config).num_params() == 7_331_390_721
    assert config.llm == DSVLConfig.from_name("dsvl-7b").llm


def test_missing_extra_and_misshapen_weights_are_all_listed(tmp_path):
    model = DSVLModel.from_name("dsvl-micro-siglip")
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["aligner.layers.0.bias"]
    state["aligner.surprise"] = torch.zeros(3)
    state["language_model.model.norm.weight"] = torch.zeros(7)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as error:
        DSVLModel.from_pretrained(tmp_path)
    message = str(error.value)
    assert "1 missing: aligner.layers.0.bias" in message
    assert "1 unexpected: aligner.surprise" in message
    assert "language_model.model.norm.weight: file (7,) vs model (64,)" in message


def test_not_a_folder_and_unknown_formats_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        DSVLModel.from_pretrained(tmp_path / "deepseek-ai/deepseek-vl-7b-chat")
    with pytest.raises(FileNotFoundError, match="config.json"):
        DSVLModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="multi_modality"):
        DSVLModel.from_pretrained(tmp_path)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = randomize_(DSVLModel.from_name("dsvl-micro-siglip"))
    model.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def broken_save(state, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        DSVLModel.from_name("dsvl-micro-siglip").save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsvl_config.json", "model.safetensors"]




def test_foreign_folders_are_read_by_the_readers_convert_registers(tmp_path, monkeypatch):
    """Our loader (model/files.py) reads transformers and original folders through dsvl_lab.convert's readers."""
    from dsvl_lab.model import files

    assert set(files.FOLDER_FORMATS) == {"hf", "original"}  # registered by `from dsvl_lab import convert`
    convert.to_hf(DSVLModel.from_name("dsvl-micro-siglip", pixel_input="normalized")).save_pretrained(tmp_path)
    monkeypatch.setattr(files, "FOLDER_FORMATS", {})
    with pytest.raises(ValueError, match="import dsvl_lab.convert"):
        DSVLModel.from_pretrained(tmp_path)


def test_dtype_argument_casts_weights(tmp_path):
    DSVLModel.from_name("dsvl-micro-hybrid").save_pretrained(tmp_path)
    model = DSVLModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    batch = make_batch(model.config)
    batch["pixel_values"] = batch["pixel_values"].bfloat16()
    assert torch.isfinite(model(**batch).logits.float()).all()


def test_a_damaged_weights_file_is_named_in_the_error(tmp_path):
    DSVLModel.from_name("dsvl-micro-siglip").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="model.safetensors"):
        DSVLModel.from_pretrained(tmp_path)


# ============================================================================ original configs, checked against
# the original code (deepseek_vl/models/clip_encoder.py, siglip_vit.py, projector.py, processing_vlm.py)
def original_13b(tower: dict | None = None, aligner: dict | None = None, drop: tuple[str, ...] = ()) -> dict:
    """An original config.json of the 1.3B's shape (SigLIP only); ``tower`` / ``aligner`` entries replace its
    own, ``drop`` removes keys from either (not the verbatim release file)."""
    params = {"model_name": "siglip_large_patch16_384", "image_size": 384, "select_layer": -1,
              "pixel_mean": [0.5, 0.5, 0.5], "pixel_std": [0.5, 0.5, 0.5], **(tower or {})}
    projector = {"projector_type": "mlp_gelu", "depth": 2, "input_dim": 1024, "n_embed": 2048, **(aligner or {})}
    return {
        "model_type": "multi_modality",
        "vision_config": {"cls": "CLIPVisionTower", "params": {k: v for k, v in params.items() if k not in drop}},
        "aligner_config": {"cls": "MlpProjector", "params": {k: v for k, v in projector.items() if k not in drop}},
        "language_config": {"hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 16,
                            "num_key_value_heads": 16, "num_hidden_layers": 24, "vocab_size": 102400},
    }


def test_original_tower_without_statistics_is_not_normalised():
    """CLIPVisionTower builds no image_norm unless pixel_mean and pixel_std are both given."""
    from dsvl_lab.processor import DSVLProcessor

    config = convert.config_from_original(original_13b(drop=("pixel_mean", "pixel_std")))
    assert (config.siglip.pixel_mean, config.siglip.pixel_std) == convert.NO_NORMALIZATION
    assert convert.config_from_original(original_13b()).siglip.pixel_std == (0.5, 0.5, 0.5)  # given: used
    # The same statistics on a micro model: the tower sees the raw [0, 1] pixels, bit for bit.
    stats = {"siglip.pixel_mean": config.siglip.pixel_mean, "siglip.pixel_std": config.siglip.pixel_std}
    model = randomize_(DSVLModel.from_name("dsvl-micro-siglip", **stats)).eval()
    images = torch.rand(2, 3, model.config.image_size, model.config.image_size)
    assert torch.equal(model.vision_model.low_normalize(images), images)
    with torch.no_grad():
        assert torch.equal(model.vision_model(images), model.vision_model.low(images))
    # The processor pads with the mean colour, so the tower sees zeros there, normalised or not.
    assert DSVLProcessor.from_config(model.config).background_color == (0, 0, 0)
    # Half a pair is a mistake, not a wish to skip normalising.
    for given, missing in (("pixel_mean", "pixel_std"), ("pixel_std", "pixel_mean")):
        with pytest.raises(ConfigError) as error:
            convert.config_from_original(original_13b(drop=(missing,)))
        assert error.value.key == f"vision_config.params.{missing}" and "missing" in error.value.problem


@pytest.mark.parametrize("select_layer, blocks", [(-1, 24), (-2, 23), (None, 23), (0, 24), (10, 10), (99, 24)])
def test_original_select_layer_sets_the_siglip_depth(select_layer, blocks):
    """create_siglip_vit builds only the blocks up to select_layer; CLIPVisionTower's default is -2."""
    data = original_13b({"select_layer": select_layer}, drop=("select_layer",) if select_layer is None else ())
    assert convert.config_from_original(data).siglip.depth == blocks


def test_original_select_layer_is_refused_when_unusable_and_ignored_for_sam():
    for value, words in (("-1", "must be an integer"), (True, "must be an integer"), (-25, "leaves none")):
        with pytest.raises(ConfigError) as error:
            convert.config_from_original(original_13b({"select_layer": value}))
        assert error.value.key == "vision_config.params.select_layer" and words in error.value.problem
    with pytest.raises(ConfigError, match="did you mean 'select_layer'"):
        convert.config_from_original(original_13b({"select_layr": -2}))
    hybrid = json.loads(json.dumps(ORIGINAL_7B))
    hybrid["vision_config"]["params"]["high_res_cfg"]["select_layer"] = -5  # create_sam_vit never reads it
    assert convert.config_from_original(hybrid).sam.depth == 12


def test_original_checkpoint_blocks_past_select_layer_are_dropped(tmp_path, capsys):
    """The original leaves the checkpoint's unbuilt SigLIP blocks unused; the loader says so and drops them."""
    full = randomize_(DSVLModel.from_name("dsvl-micro-siglip", **{"siglip.depth": 2})).eval()
    write_original_folder(full, tmp_path)
    loaded = DSVLModel.from_pretrained(tmp_path, config=full.config.replace(**{"siglip.depth": 1}))
    assert "select_layer" in capsys.readouterr().out
    kept = loaded.state_dict()
    assert not any(key.startswith("vision_model.low.blocks.1.") for key in kept)
    assert all(torch.equal(tensor, full.state_dict()[key]) for key, tensor in kept.items())


def test_original_aligner_depth_defaults_to_one():
    """MlpProjector reads cfg.get("depth", 1): a single Linear (layers.0) when the file names no depth."""
    config = convert.config_from_original(original_13b(drop=("depth",)))
    assert config.aligner.depth == 1
    with torch.device("meta"):
        keys = [key for key in DSVLModel(config).state_dict() if key.startswith("aligner.")]
    assert keys == ["aligner.layers.0.weight", "aligner.layers.0.bias"]
    assert convert.config_from_original(original_13b()).aligner.depth == 2


def write_tokenizer(folder, special: list[str]) -> None:
    """A word-level tokenizer.json of 5 words plus ``special`` as added tokens (ids 5, 6, ...)."""
    from tokenizers import Tokenizer, models

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "a", "b", "c", "d"])},
                                           unk_token="<unk>"))
    tokenizer.add_special_tokens(special)
    tokenizer.save(str(folder / "tokenizer.json"))


def test_original_image_token_id_comes_from_the_folders_tokenizer(tmp_path):
    """VLChatProcessor looks image_tag up in the tokenizer, and adds it as a new token when it is missing."""
    (tmp_path / "config.json").write_text(json.dumps(original_13b()))
    assert convert.folder_config(tmp_path, "original").image_token_id == DSVLConfig().image_token_id  # no tokenizer
    write_tokenizer(tmp_path, ["<｜end▁of▁sentence｜>", "<image_placeholder>"])
    assert convert.folder_config(tmp_path, "original").image_token_id == 6
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_tag": "<｜end▁of▁sentence｜>"}))
    assert convert.folder_config(tmp_path, "original").image_token_id == 5  # the tag the processor names
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_tag": "<image>"}))
    assert convert.folder_config(tmp_path, "original").image_token_id == 7  # added after the 7 tokens
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read this tokenizer"):
        convert.folder_config(tmp_path, "original")
