"""DSVLProcessor: the "deepseek" chat template, labels, image-token expansion, batching, and images."""
import base64
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models

from dsvl_lab.config import BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, DSVLConfig
from dsvl_lab.data.tokenizer import SHIPPED_TOKENIZER, load_tokenizer
from dsvl_lab.processor import IGNORE_INDEX, DSVLProcessor, ProcessorError

SAMPLE_DATA = Path(matplotlib.get_data_path()) / "sample_data"
PHOTO = SAMPLE_DATA / "grace_hopper.jpg"  # JPEG, 512 wide x 600 high
SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content that "
          "the user provides, and assist the user with a variety of tasks using natural language.")
S = 64  # processed image side in these tests
NUM_IMAGE_TOKENS = 16
BACKGROUND = 127 / 255  # int(255 * 0.5) / 255


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(SHIPPED_TOKENIZER)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return DSVLProcessor(tokenizer, image_size=S, num_image_tokens=NUM_IMAGE_TOKENS, image_mean=(0.5, 0.5, 0.5),
                         image_token_id=3, bos_token_id=0, eos_token_id=1, pad_token_id=2, max_length=512)


@pytest.fixture(scope="module")
def photo():
    with Image.open(PHOTO) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def reference_rgb(processor, photo):
    return processor.preprocess_image(photo)


@pytest.fixture(scope="module")
def reference_grey(processor, photo):
    return processor.preprocess_image(photo.convert("L"))


def user(content, *images):
    return {"role": "user", "content": content, "images": list(images)}


def assistant(content):
    return {"role": "assistant", "content": content}


def supervised_spans(labels):
    """The runs of consecutive supervised positions, as lists of token ids."""
    spans, current = [], []
    for label in labels.tolist():
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            current.append(label)
    return spans + ([current] if current else [])


# ============================================================================ chat template (golden)

def test_template_single_turn_with_image(processor):
    conversation = [user("<image_placeholder>Describe each stage of this image.", PHOTO)]
    assert processor.apply_chat_template(conversation) == (
        "You are a helpful language and vision assistant. You are able to understand the visual content that "
        "the user provides, and assist the user with a variety of tasks using natural language.\n\n"
        "User: <image_placeholder>Describe each stage of this image.\n\n"
        "Assistant:")


def test_template_multi_turn(processor):
    conversation = [user("What is 2+2?"), assistant("4"), user("And 3+3?"), assistant("6")]
    assert processor.apply_chat_template(conversation, add_generation_prompt=False) == (
        SYSTEM + "\n\n"
        "User: What is 2+2?\n\n"
        "Assistant: 4<｜end▁of▁sentence｜>"
        "User: And 3+3?\n\n"
        "Assistant: 6<｜end▁of▁sentence｜>")


def test_template_generation_prompt_after_history(processor):
    conversation = [user("Hi"), assistant("Hello!"), user("Name a colour.")]
    assert processor.apply_chat_template(conversation, add_generation_prompt=True) == (
        SYSTEM + "\n\nUser: Hi\n\nAssistant: Hello!<｜end▁of▁sentence｜>User: Name a colour.\n\nAssistant:")


def test_template_open_assistant_turn_and_original_role_names(processor):
    # The original format: capitalised roles, and an empty last assistant message as the open turn.
    original = [{"role": "User", "content": "Hi"}, {"role": "Assistant", "content": ""}]
    assert processor.apply_chat_template(original, add_generation_prompt=False) == (
        processor.apply_chat_template([user("Hi")], add_generation_prompt=True))


def test_template_system_message_replaces_the_default(processor):
    assert processor.apply_chat_template([{"role": "system", "content": "Be brief."}, user("Hi")]) == (
        "Be brief.\n\nUser: Hi\n\nAssistant:")
    assert processor.apply_chat_template([{"role": "system", "content": ""}, user("Hi")]) == (
        "User: Hi\n\nAssistant:")


def test_template_is_stripped_like_the_original(processor):
    assert processor.apply_chat_template([user("Hi")], add_generation_prompt=False) == SYSTEM + "\n\nUser: Hi"


# ============================================================================ tokens and labels

def test_bos_first_and_labels_supervise_only_the_answer_and_its_eos(processor):
    batch = processor([user("<image_placeholder>What is written?", PHOTO), assistant("The word hello.")])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    assert ids[0].item() == 0 and labels[0].item() == IGNORE_INDEX
    spans = supervised_spans(labels)
    assert len(spans) == 1
    assert processor.decode(spans[0], skip_special_tokens=False) == " The word hello.<｜end▁of▁sentence｜>"
    assert spans[0][-1] == 1  # EOS is supervised: the model must learn to stop
    supervised = labels != IGNORE_INDEX
    assert torch.equal(labels[supervised], ids[supervised])
    assert (labels[ids == 3] == IGNORE_INDEX).all()


def test_labels_multi_turn_supervise_every_answer(processor):
    conversation = [user("What is 2+2?"), assistant("4"), user("And 3+3?"), assistant("six, of course")]
    spans = supervised_spans(processor(conversation)["labels"][0])
    assert [processor.decode(s, skip_special_tokens=False) for s in spans] == [
        " 4<｜end▁of▁sentence｜>", " six, of course<｜end▁of▁sentence｜>"]


def test_generation_prompt_has_no_labels(processor):
    batch = processor([user("Hi")], add_generation_prompt=True)
    assert (batch["labels"] == IGNORE_INDEX).all()
    assert processor.decode(batch["input_ids"][0]).endswith("User: Hi\n\nAssistant:")


def test_segment_by_segment_ids_equal_the_joint_tokenisation(processor, tokenizer):
    # Building ids piece by piece (for exact labels) must not change the tokens: the answer segment
    # starts with the space after "Assistant:", as the tokenizer glues a space to the next word.
    conversation = [user("<image_placeholder>Read it.", PHOTO), assistant("42 apples"),
                    user("Again?"), assistant("\n(yes) 'quoted'"), user("<image_placeholder>And?", PHOTO),
                    assistant("...fine")]
    text = processor.apply_chat_template(conversation, add_generation_prompt=False)
    joint = []
    for token_id in tokenizer.encode(text, add_special_tokens=False).ids:
        joint += [3] * NUM_IMAGE_TOKENS if token_id == 3 else [token_id]
    assert processor(conversation)["input_ids"][0].tolist() == [0] + joint


def test_image_tokens_expand_to_num_image_tokens_per_image(processor):
    conversation = [user("<image_placeholder><image_placeholder>Compare.", PHOTO, PHOTO), assistant("Same."),
                    user("And <image_placeholder>?", PHOTO)]
    batch = processor(conversation, add_generation_prompt=True)
    ids = batch["input_ids"][0]
    assert (ids == 3).sum().item() == 3 * NUM_IMAGE_TOKENS
    assert batch["pixel_values"].shape == (3, 3, S, S)
    assert batch["images_per_sample"] == [3]


def test_images_of_a_batch_come_in_order(processor):
    red, green, blue = (Image.new("RGB", (8, 8), c) for c in ("red", "lime", "blue"))
    batch = processor([[user("<image_placeholder>", red), assistant("red")],
                       [user("Nothing to see."), assistant("ok")],
                       [user("<image_placeholder> <image_placeholder>", green, blue)]])
    assert batch["images_per_sample"] == [1, 0, 2]
    colours = batch["pixel_values"][:, :, S // 2, S // 2]  # [N, 3] centre pixels
    assert torch.equal(colours, torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]))


def test_left_padding(processor):
    short = [user("Hi"), assistant("Hello.")]
    long = [user("Tell me a long story about a cat and a dog."), assistant("Once upon a time there was a cat.")]
    batch = processor([short, long])
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    lengths = [len(processor([c])["input_ids"][0]) for c in (short, long)]
    assert ids.shape == mask.shape == labels.shape == (2, max(lengths))
    pad = lengths[1] - lengths[0]
    assert pad > 0
    assert (ids[0, :pad] == 2).all() and (mask[0, :pad] == 0).all() and (labels[0, :pad] == IGNORE_INDEX).all()
    assert ids[0, pad].item() == 0 and (mask[0, pad:] == 1).all() and (mask[1] == 1).all()
    assert ids[0, -1].item() == ids[1, -1].item() == 1  # both rows end with their real last token (EOS)
    assert torch.equal(ids[0, pad:], processor([short])["input_ids"][0])


def test_text_only_batch_has_empty_pixel_values(processor):
    batch = processor([user("Hi"), assistant("Hello.")], return_labels=False)
    assert batch["pixel_values"].shape == (0, 3, S, S)
    assert batch["images_per_sample"] == [0]
    assert "labels" not in batch


def test_encode_text_and_decode(processor):
    ids = processor.encode_text("Language-only sample.", add_eos=True)
    assert ids[0] == 0 and ids[-1] == 1
    assert processor.decode(ids) == "Language-only sample."
    assert processor.decode(torch.tensor(ids), skip_special_tokens=False) == (
        BOS_TOKEN + "Language-only sample." + EOS_TOKEN)
    assert processor.encode_text("x", add_bos=False) == processor.tokenizer.encode("x").ids
    with pytest.raises(ProcessorError, match="without images"):
        processor.encode_text("a <image_placeholder> b")


# ============================================================================ conversation errors

@pytest.mark.parametrize("conversation, keyword", [
    ([user("<image_placeholder><image_placeholder>Two?", PHOTO)], "placeholder"),    # fewer images than tags
    ([user("No tag here.", PHOTO)], "placeholder"),                                  # more images than tags
    ([{"role": "bot", "content": "Hi"}], "unknown role"),
    ([], "empty conversation"),
    ([[]], "empty conversation"),
    ([{"role": "system", "content": "Only a system prompt."}], "empty conversation"),
    ([user("Hi"), {"role": "system", "content": "late"}], "must come first"),
    ([{"role": "user"}], "'role' and 'content'"),
    ([user("Hi"), assistant(""), user("Hi again")], "only the last assistant"),
])
def test_bad_conversations(processor, conversation, keyword):
    with pytest.raises(ProcessorError, match=keyword):
        processor(conversation)


def test_prompt_longer_than_the_context(tokenizer):
    small = DSVLProcessor(tokenizer, image_size=S, num_image_tokens=NUM_IMAGE_TOKENS, image_mean=(0.5,) * 3,
                          image_token_id=3, bos_token_id=0, eos_token_id=1, pad_token_id=2, max_length=60)
    with pytest.raises(ProcessorError, match="max_length=60"):
        small([user("<image_placeholder>Describe.", PHOTO)])


def test_processor_error_is_a_value_error():
    assert issubclass(ProcessorError, ValueError)


# ============================================================================ real photos

def background_band(tensor, columns=None, rows=None):
    band = tensor[:, :, columns] if columns is not None else tensor[:, rows, :]
    return bool((band == torch.tensor(BACKGROUND, dtype=torch.float32)).all())


def test_photo_shape_range_and_aspect_preserving_padding(processor, reference_rgb):
    x = processor.preprocess_image(PHOTO)
    assert torch.equal(x, reference_rgb)
    assert x.dtype == torch.float32 and x.shape == (3, S, S)
    assert 0.0 <= x.min() and x.max() <= 1.0
    # 512 x 600 portrait: width int(512 / 600 * 64) = 54, centred with (64 - 54) // 2 = 5 columns each side.
    assert background_band(x, columns=slice(0, 5)) and background_band(x, columns=slice(59, 64))
    assert not background_band(x, columns=slice(5, 6)) and not background_band(x, columns=slice(58, 59))


def test_landscape_logo_is_padded_top_and_bottom_over_a_mean_coloured_transparency(processor, tokenizer):
    x = processor.preprocess_image(SAMPLE_DATA / "logo2.png")  # 542 x 130 RGBA
    # height int(130 / 542 * 64) = 15, offset (64 - 15) // 2 = 24 rows above, 25 below
    assert background_band(x, rows=slice(0, 24)) and background_band(x, rows=slice(39, 64))
    # At full size (no resize) every fully transparent pixel shows the background colour, not black.
    full = DSVLProcessor(tokenizer, image_size=542, num_image_tokens=1, image_mean=(0.5,) * 3, image_token_id=3,
                         bos_token_id=0, eos_token_id=1, pad_token_id=2, max_length=64)
    alpha = np.asarray(Image.open(SAMPLE_DATA / "logo2.png"))[..., 3]
    top = (542 - 130) // 2
    logo = full.preprocess_image(SAMPLE_DATA / "logo2.png")[:, top:top + 130, :]
    assert (logo[:, torch.from_numpy(alpha == 0)] == BACKGROUND).all()


def test_rgba_png_works(processor):
    x = processor.preprocess_image(SAMPLE_DATA / "Minduka_Present_Blue_Pack.png")  # 128 x 128 RGBA
    assert x.shape == (3, S, S) and 0.0 <= x.min() and x.max() <= 1.0


def test_every_input_kind_gives_the_same_tensor(processor, reference_rgb, photo):
    data = PHOTO.read_bytes()
    data_url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    for source in (str(PHOTO), data, bytearray(data), io.BytesIO(data), data_url, np.asarray(photo)):
        assert torch.equal(processor.preprocess_image(source), reference_rgb)


@pytest.mark.parametrize("make", [
    lambda rgb: rgb.convert("L"),
    lambda rgb: rgb.convert("LA"),
    lambda rgb: np.asarray(rgb.convert("L")),                                          # numpy HxW uint8
    lambda rgb: np.asarray(rgb.convert("L"))[..., None],                               # numpy HxWx1
    lambda rgb: Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257),  # I;16
    lambda rgb: Image.frombytes("I;16B", rgb.size,
                                (np.asarray(rgb.convert("L")).astype(">u2") * 257).tobytes()),
    lambda rgb: Image.fromarray(np.asarray(rgb.convert("L")).astype(np.int32) * 257),   # I (16-bit values)
    lambda rgb: Image.fromarray(np.asarray(rgb.convert("L")).astype(np.int32)),         # I (8-bit values)
    lambda rgb: Image.fromarray(np.asarray(rgb.convert("L")).astype(np.float32) / 255),  # F in [0, 1]
    lambda rgb: np.asarray(rgb.convert("L")).astype(np.uint16) * 257,                  # numpy uint16
], ids=["L", "LA", "np-HW", "np-HW1", "I;16", "I;16B", "I-16bit", "I-8bit", "F", "np-uint16"])
def test_grey_and_high_bit_depth_versions_match_the_8_bit_grey_photo(processor, photo, reference_grey, make):
    x = processor.preprocess_image(make(photo))
    assert torch.allclose(x, reference_grey, atol=1e-6)


def test_16_bit_png_file_is_scaled_not_clipped(processor, photo, reference_grey):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).save(buffer, "PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I")
    assert torch.allclose(processor.preprocess_image(buffer.getvalue()), reference_grey, atol=1e-6)


@pytest.mark.parametrize("make, tolerance", [
    (lambda rgb: rgb.convert("CMYK"), 1e-6),
    (lambda rgb: rgb.convert("RGBA"), 1e-6),
    (lambda rgb: rgb.convert("P"), 0.05),  # 256-colour palette: close, not equal
    (lambda rgb: np.asarray(rgb).astype(np.float64) / 255, 1e-6),
    (lambda rgb: np.asarray(rgb.convert("RGBA")), 1e-6),
], ids=["CMYK", "RGBA-opaque", "P", "np-float", "np-RGBA"])
def test_colour_versions_match_the_photo(processor, photo, reference_rgb, make, tolerance):
    x = processor.preprocess_image(make(photo))
    assert (x - reference_rgb).abs().mean() <= tolerance


def test_one_bit_photo_works(processor, photo):
    x = processor.preprocess_image(photo.convert("1"))
    assert x.shape == (3, S, S) and 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_transparent_pixels_take_the_background_colour_not_black(processor, photo):
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.new("L", photo.size, 0))  # fully transparent
    assert processor.load_image(rgba).getpixel((10, 10)) == (127, 127, 127)
    palette = Image.new("P", (20, 10), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (10, 0, 20, 10))
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)  # a palette PNG whose colour 0 is transparent (tRNS)
    loaded = processor.load_image(buffer.getvalue())
    assert loaded.getpixel((0, 0)) == (127, 127, 127) and loaded.getpixel((15, 5)) == (255, 0, 0)


def test_exif_rotated_jpeg_is_turned_upright(processor, photo, reference_rgb):
    sideways = photo.transpose(Image.Transpose.ROTATE_90)  # how a phone stores a portrait photo
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    sideways.save(buffer, "JPEG", quality=95, exif=exif)
    x = processor.preprocess_image(buffer.getvalue())
    # Upright means portrait again: the padding bands are left and right, and the pixels match.
    assert background_band(x, columns=slice(0, 5)) and background_band(x, columns=slice(59, 64))
    assert (x - reference_rgb).abs().mean() < 0.02


# ============================================================================ bad images

def png_header(width, height):
    """A PNG that declares a size but holds no pixel data."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_not_an_image(processor, tmp_path):
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("this is not a picture")
    for source in (text_file, b"hello"):
        with pytest.raises(ProcessorError, match="not an image"):
            processor.preprocess_image(source)


def test_missing_file(processor, tmp_path):
    with pytest.raises(ProcessorError, match="not found"):
        processor.preprocess_image(tmp_path / "missing.png")


def test_truncated_file(processor):
    data = PHOTO.read_bytes()
    with pytest.raises(ProcessorError, match="truncated"):
        processor.preprocess_image(data[: len(data) // 2])


@pytest.mark.parametrize("source", [Image.new("RGB", (0, 5)), np.zeros((0, 5, 3), np.uint8)], ids=["PIL", "numpy"])
def test_zero_size_image(processor, source):
    with pytest.raises(ProcessorError, match="zero-size"):
        processor.preprocess_image(source)


def test_pixel_limit_is_checked_from_the_header_before_decoding(processor):
    # 9000 x 9000 = 81M pixels > 64M. The file holds no pixel data: decoding would fail as "truncated",
    # so getting the pixel-limit error proves the check ran first.
    with pytest.raises(ProcessorError, match="pixel limit") as error:
        processor.preprocess_image(png_header(9000, 9000))
    assert "max_image_pixels" in str(error.value)


def test_pixel_limit_is_configurable(tokenizer):
    strict = DSVLProcessor(tokenizer, image_size=S, num_image_tokens=1, image_mean=(0.5,) * 3, image_token_id=3,
                           bos_token_id=0, eos_token_id=1, pad_token_id=2, max_length=64, max_image_pixels=100_000)
    with Image.open(PHOTO) as lazily_opened:
        for source in (PHOTO, lazily_opened, np.zeros((400, 400, 3), np.uint8)):
            with pytest.raises(ProcessorError, match="pixel limit"):
                strict.preprocess_image(source)


@pytest.mark.parametrize("pil_limit", [200_000, 100_000], ids=["pil-warning", "pil-error"])
def test_pils_own_decompression_bomb_check_becomes_our_error(processor, monkeypatch, pil_limit):
    # 512 x 600 = 307,200 pixels: PIL warns above its limit and raises above twice its limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)
    with pytest.raises(ProcessorError, match="pixel limit"):
        processor.preprocess_image(PHOTO)


@pytest.mark.parametrize("source, keyword", [
    (np.zeros((3, 32, 32), np.uint8), "transpose"),
    (12345, "cannot read an image"),
], ids=["CHW-array", "int"])
def test_unsupported_sources(processor, source, keyword):
    with pytest.raises(ProcessorError, match=keyword):
        processor.preprocess_image(source)


def test_bad_image_in_a_batch_names_its_index(processor):
    with pytest.raises(ProcessorError, match="image 1 of the batch.*not an image"):
        processor([user("<image_placeholder><image_placeholder>", PHOTO, b"junk")])


# ============================================================================ constructors

def test_from_config_uses_the_shipped_tokenizer_and_the_preset():
    siglip = DSVLProcessor.from_config(DSVLConfig.from_name("dsvl-micro-siglip"))
    assert (siglip.image_size, siglip.num_image_tokens, siglip.background_color) == (32, 16, (127, 127, 127))
    assert (siglip.bos_token_id, siglip.eos_token_id, siglip.pad_token_id, siglip.image_token_id) == (0, 1, 2, 3)
    assert siglip.max_length == 512
    hybrid = DSVLProcessor.from_config(DSVLConfig.from_name("dsvl-micro-hybrid"))
    assert hybrid.image_size == 64 and hybrid.background_color == (122, 116, 104)  # CLIP mean, as the 7B
    assert hybrid.preprocess_image(PHOTO)[:, 0, 0].mul(255).round().tolist() == [122, 116, 104]


def test_from_config_refuses_a_tokenizer_that_does_not_fit(tokenizer):
    with pytest.raises(ProcessorError, match="vocab_size"):
        DSVLProcessor.from_config(DSVLConfig.from_name("dsvl-micro-siglip", **{"llm.vocab_size": 1000}), tokenizer)
    with pytest.raises(ProcessorError, match="special token"):
        DSVLProcessor.from_config(DSVLConfig.from_name("dsvl-1.3b"), tokenizer)  # real ids 100000...


def test_from_pretrained_reads_a_deepseek_folder(tmp_path):
    shutil.copy(SHIPPED_TOKENIZER, tmp_path / "tokenizer.json")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "image_size": 48, "image_mean": [0.48145466, 0.4578275, 0.40821073], "background_color": [122, 116, 104],
        "min_size": 14, "do_normalize": False, "rescale_factor": 1 / 255}))
    (tmp_path / "processor_config.json").write_text(json.dumps({"num_image_tokens": 9,
                                                                "image_tag": "<image_placeholder>"}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 300,
                                                                "bos_token": {"content": BOS_TOKEN}}))
    processor = DSVLProcessor.from_pretrained(tmp_path)
    assert (processor.image_size, processor.num_image_tokens, processor.max_length) == (48, 9, 300)
    assert processor.background_color == (122, 116, 104)
    assert (processor.bos_token_id, processor.eos_token_id, processor.pad_token_id) == (0, 1, 2)
    assert processor.preprocess_image(PHOTO).shape == (3, 48, 48)


def test_from_pretrained_pads_with_eos_when_there_is_no_pad_token(tmp_path):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.add_special_tokens([BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_size": 32}))
    processor = DSVLProcessor.from_pretrained(tmp_path)
    assert processor.pad_token_id == processor.eos_token_id == 1
    assert processor.image_token_id == 2 and processor.num_image_tokens == 576


def test_from_pretrained_missing_files(tmp_path):
    with pytest.raises(ProcessorError, match="tokenizer"):
        DSVLProcessor.from_pretrained(tmp_path)
    shutil.copy(SHIPPED_TOKENIZER, tmp_path / "tokenizer.json")
    with pytest.raises(ProcessorError, match="preprocessor_config.json is missing"):
        DSVLProcessor.from_pretrained(tmp_path)
