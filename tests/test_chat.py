"""``dsvl_lab.chat`` and ``dsvl-lab chat``: finding the model, streaming, conversations, errors."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from dsvl_lab import convert
from dsvl_lab.chat import (AnswerStreamer, ChatError, chat, load_chat_model, pick_device, repl,
                           resolve_model_folder)
from dsvl_lab.cli import main
from dsvl_lab.data.tasks import generate_sample
from dsvl_lab.data.tokenizer import SHIPPED_TOKENIZER
from dsvl_lab.model import DSVLModel

from conftest import randomize_

PRESET = "dsvl-micro-hybrid"


def micro_model(seed: int) -> DSVLModel:
    torch.manual_seed(seed)
    return randomize_(DSVLModel.from_name(PRESET), seed)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A fake pipeline output: stage 1 and stage 3 finished (different weights), stage 2 started only."""
    folder = tmp_path_factory.mktemp("pipeline") / "run"
    micro_model(1).save_pretrained(folder / "stage1_adaptor" / "model")
    (folder / "stage2_joint" / "checkpoints").mkdir(parents=True)
    micro_model(3).save_pretrained(folder / "stage3_sft" / "model")
    return folder


@pytest.fixture(scope="module")
def image(tmp_path_factory, run):
    size = DSVLModel.from_name(PRESET).config.image_size
    path = tmp_path_factory.mktemp("images") / "chart.png"
    generate_sample("chart", 0, detail="coarse", image_size=size).image.save(path)
    return path


@pytest.fixture(scope="module")
def loaded(run):
    return load_chat_model(run)


def greedy_reference(model, processor, prompt: str, image, max_new_tokens: int) -> str:
    """The answer computed without chat(): the template by hand, generate, decode."""
    content = "<image_placeholder>" + prompt if image else prompt
    message = {"role": "user", "content": content, **({"images": [image]} if image else {})}
    encoded = processor.encode_conversation([message], add_generation_prompt=True)
    pixels = processor.process_images(encoded.images) if image else None
    tokens = model.generate(torch.tensor([encoded.input_ids]), pixel_values=pixels, max_new_tokens=max_new_tokens)
    return processor.decode(tokens[0]).lstrip()


# ============================================================================ finding the model
def test_a_pipeline_output_uses_its_last_finished_stage(run, loaded):
    folder, found = resolve_model_folder(run)
    assert folder == run / "stage3_sft" / "model" and "stage3_sft" in found and "last finished" in found
    model, _, description = loaded
    assert "stage3_sft" in description and PRESET in description and "cpu" in description
    reference = DSVLModel.from_pretrained(run / "stage3_sft" / "model").state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())


def test_without_stage3_the_last_finished_stage_is_stage1(tmp_path, run):
    shutil.copytree(run / "stage1_adaptor", tmp_path / "stage1_adaptor")
    (tmp_path / "stage2_joint").mkdir()  # started, not finished: no model/ yet
    folder, found = resolve_model_folder(tmp_path)
    assert folder == tmp_path / "stage1_adaptor" / "model" and found.startswith("stage1_adaptor")


def test_a_stage_folder_and_a_model_folder_resolve_directly(run):
    stage = run / "stage1_adaptor"
    assert resolve_model_folder(stage) == (stage / "model", "the model of stage folder stage1_adaptor")
    assert resolve_model_folder(stage / "model")[0] == stage / "model"


def test_device_auto_prefers_an_accelerator_and_cpu_otherwise():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto").type == expected and pick_device(None).type == expected
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ChatError, match="unknown device"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ChatError, match="no CUDA"):
            pick_device("cuda")


# ============================================================================ answers and streaming
@pytest.mark.parametrize("with_image", [True, False])
def test_streamed_text_equals_the_greedy_answer(loaded, image, with_image):
    model, processor, _ = loaded
    picture = image if with_image else None
    pieces: list[str] = []
    streamed = chat(model, processor, "What colour is the largest slice?", image=picture, max_new_tokens=12,
                    stream=pieces.append)
    silent = chat(model, processor, "What colour is the largest slice?", image=picture, max_new_tokens=12)
    assert len(pieces) > 1 and "".join(pieces) == streamed == silent
    assert silent == greedy_reference(model, processor, "What colour is the largest slice?", picture, 12)


def test_the_image_changes_the_answer(loaded, image):
    model, processor, _ = loaded
    prompt = "What colour is the largest slice?"
    assert chat(model, processor, prompt, image=image, max_new_tokens=8) != chat(model, processor, prompt,
                                                                                  max_new_tokens=8)


def test_streaming_holds_back_a_character_split_over_byte_tokens(loaded):
    """Byte-level BPE splits 'é' and emoji into byte tokens; no piece may show a half character."""
    _, processor, _ = loaded
    text = " café 🙂 naïve ✓"
    ids = processor.tokenizer.encode(text, add_special_tokens=False).ids
    one_by_one = [processor.decode([i]) for i in ids]
    assert any("\ufffd" in piece for piece in one_by_one)  # the naive way would print broken characters
    pieces: list[str] = []
    stream = AnswerStreamer(processor, pieces.append)
    for token in ids + [processor.eos_token_id]:
        stream(torch.tensor([token]))
    assert stream.finish() == text.lstrip() == "".join(pieces)
    assert not any("\ufffd" in piece for piece in pieces)


def test_sampling_with_a_seed_repeats(loaded):
    model, processor, _ = loaded
    options = dict(max_new_tokens=10, do_sample=True, temperature=1.5, top_k=50, top_p=0.95)
    first = chat(model, processor, "Tell a story", seed=7, **options)
    assert first == chat(model, processor, "Tell a story", seed=7, **options)
    others = {chat(model, processor, "Tell a story", seed=seed, **options) for seed in range(8, 12)}
    assert others != {first}


def test_a_conversation_continues_with_the_earlier_answer(loaded, image):
    model, processor, _ = loaded
    typed = iter(["Is it purple?", "exit", "never read"])
    shown: list[str] = []
    conversation = repl(model, processor, image=image, first_prompt="What colour is the largest slice?",
                        read=lambda prompt: next(typed), write=shown.append, max_new_tokens=6)
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant"]
    assert conversation[0]["images"] == [image] and "images" not in conversation[2]
    first = chat(model, processor, "What colour is the largest slice?", image=image, max_new_tokens=6)
    assert conversation[1]["content"] == first
    assert conversation[3]["content"] == chat(model, processor, conversation[:3], max_new_tokens=6)
    assert "".join(shown).count("Assistant: ") == 2


def test_ctrl_d_ends_the_conversation(loaded):
    model, processor, _ = loaded

    def read(prompt):
        raise EOFError

    assert repl(model, processor, read=read, write=lambda text: None) == []


# ============================================================================ a real DeepSeek-VL folder
def write_transformers_folder(model: DSVLModel, folder, num_image_tokens: int | None = None) -> None:
    """What a DeepSeek-VL folder in the transformers format holds: weights, config, tokenizer, processor files."""
    convert.to_hf(model).save_pretrained(folder)
    shutil.copy(SHIPPED_TOKENIZER, folder / "tokenizer.json")
    config = model.config
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "high_res_size": {"height": config.image_size, "width": config.image_size},
        "high_res_image_mean": list(config.sam.pixel_mean), "size": {"height": config.siglip.image_size}}))
    (folder / "processor_config.json").write_text(json.dumps({
        "num_image_tokens": num_image_tokens or config.num_image_tokens, "image_tag": "<image_placeholder>"}))


def test_a_transformers_folder_answers_like_the_same_weights_in_our_format(tmp_path, run, image):
    ours = DSVLModel.from_pretrained(run / "stage3_sft" / "model")
    write_transformers_folder(ours, tmp_path / "deepseek-vl")
    model, processor, description = load_chat_model(tmp_path / "deepseek-vl")
    assert "transformers format" in description
    ours_model, ours_processor, _ = load_chat_model(run)
    for picture in (image, None):
        expected = chat(ours_model, ours_processor, "What colour is the largest slice?", image=picture,
                        max_new_tokens=10)
        assert chat(model, processor, "What colour is the largest slice?", image=picture,
                    max_new_tokens=10) == expected


def test_a_folder_mixing_two_checkpoints_is_refused(tmp_path, run):
    ours = DSVLModel.from_pretrained(run / "stage3_sft" / "model")
    write_transformers_folder(ours, tmp_path, num_image_tokens=ours.config.num_image_tokens * 4)
    with pytest.raises(ChatError, match="image tokens per image"):
        load_chat_model(tmp_path)


# ============================================================================ the command
def test_the_command_streams_the_answer_to_stdout(run, image, loaded, capsys):
    model, processor, _ = loaded
    argv = ["chat", "--checkpoint", str(run), "--image", str(image), "--prompt", "What colour is the largest slice?",
            "--max-new-tokens", "8", "--dtype", "fp32", "--device", "cpu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    expected = chat(model, processor, "What colour is the largest slice?", image=image, max_new_tokens=8)
    assert captured.out == expected + "\n"
    assert "stage3_sft" in captured.err and "float32" in captured.err


def test_the_command_in_bf16_answers(run, capsys):
    assert main(["chat", "--checkpoint", str(run / "stage1_adaptor"), "--prompt", "Hello", "--dtype", "bf16",
                 "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert "bfloat16" in captured.err and "stage1_adaptor" in captured.err and captured.out.endswith("\n")


def test_the_interactive_command_keeps_the_conversation(run, monkeypatch, capsys):
    typed = iter(["Hello", "And then?"])

    def fake_input(prompt):
        print(prompt, end="")
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", "--checkpoint", str(run), "--interactive", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("User: ") == 3 and out.count("Assistant: ") == 2


# ============================================================================ errors
@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "does not exist"),
    (lambda tmp: (tmp / "notes.txt").write_text("hi") and tmp / "notes.txt", "is a file"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "is not a model folder"),
    (lambda tmp: (tmp / "run" / "stage1_adaptor").mkdir(parents=True) or tmp / "run", "no stage has finished"),
])
def test_a_checkpoint_that_is_not_a_model_says_what_to_pass(tmp_path, make, message, capsys):
    path = make(tmp_path)
    with pytest.raises(ChatError, match=message):
        load_chat_model(path)
    assert main(["chat", "--checkpoint", str(path), "--prompt", "Hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsvl-lab chat: error:") and message in err and err.count("\n") == 1


def test_a_missing_image_fails_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import dsvl_lab.chat

    monkeypatch.setattr(dsvl_lab.chat, "load_chat_model", lambda *a, **k: pytest.fail("loaded the model"))
    assert main(["chat", "--checkpoint", str(tmp_path), "--image", str(tmp_path / "cat.png"), "--prompt", "Hi"]) == 2
    err = capsys.readouterr().err
    assert "cat.png does not exist" in err and "--image" in err


def test_a_prompt_is_required_without_interactive(run, capsys):
    assert main(["chat", "--checkpoint", str(run)]) == 2
    assert "--prompt" in capsys.readouterr().err


def test_a_too_long_prompt_names_the_limit_and_the_fix(loaded, image, capsys, run):
    model, processor, _ = loaded
    limit = model.config.llm.max_position_embeddings
    with pytest.raises(ValueError, match=f"longer than the context of max_length={limit}; shorten"):
        chat(model, processor, "word " * limit, max_new_tokens=4)  # the processor's own check
    with pytest.raises(ChatError, match=f"context of {limit}.*lower --max-new-tokens"):
        chat(model, processor, "Hi", image=image, max_new_tokens=limit)  # fits alone, not with the answer
    assert main(["chat", "--checkpoint", str(run), "--prompt", "word " * limit]) == 2
    assert "shorten the text" in capsys.readouterr().err


def test_an_image_with_a_conversation_is_refused(loaded, image):
    model, processor, _ = loaded
    with pytest.raises(ChatError, match="images"):
        chat(model, processor, [{"role": "user", "content": "Hi"}], image=image)
