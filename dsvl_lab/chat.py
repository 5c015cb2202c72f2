"""Chat with a model: load a trained pipeline output or a real DeepSeek-VL folder, stream answers.

The original repository ships ``cli_chat.py``: it loads a Hub checkpoint, applies the "deepseek"
chat template and streams the answer. This is the same job for every folder this workbench knows::

    >>> from dsvl_lab.chat import load_chat_model, chat
    >>> model, processor, description = load_chat_model("runs/demo")   # the last finished stage
    >>> answer = chat(model, processor, "What is the tallest bar?", image="chart.png",
    ...               stream=lambda text: print(text, end="", flush=True))

What happens in :func:`chat`, in order:
  1. the prompt becomes a conversation (``<image_placeholder>`` where the image goes) and the
     processor writes it in the chat template, ending with the open ``"Assistant:"`` turn;
  2. ``DSVLModel.generate`` continues it one token at a time (greedy unless asked to sample);
  3. an :class:`AnswerStreamer` turns the growing list of token ids into text pieces as they come.

Folders :func:`load_chat_model` accepts (see :func:`resolve_model_folder`):
  - a pipeline output ``runs/demo/``: the last finished stage (``stage3_sft`` > ``stage2_joint``
    > ``stage1_adaptor``), i.e. the last one that wrote its ``model/`` folder;
  - one stage's folder ``runs/demo/stage3_sft/``: its ``model/``;
  - a folder written by ``DSVLModel.save_pretrained`` (``dsvl_config.json``): the shipped tokenizer;
  - a real DeepSeek-VL folder, original or transformers format (``config.json``): its own
    tokenizer and image settings.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from .config import IMAGE_TOKEN
from .convert import OUR_CONFIG, detect_format, load_pretrained
from .data.stage_data import STAGE_DATA_PRESETS
from .processor import DSVLProcessor
from .errors import InputError

# The paper's stages in training order; a later finished stage is the better chat model.
STAGES = tuple(STAGE_DATA_PRESETS)  # ("stage1_adaptor", "stage2_joint", "stage3_sft")
DEFAULT_MAX_NEW_TOKENS = 64
EXIT_WORDS = ("exit", "quit")
FORMATS = {"ours": "save_pretrained", "hf": "transformers", "original": "original DeepSeek-VL"}


class ChatError(InputError):
    """A problem the user can fix (a wrong path, a missing image, a prompt too long); says how."""


# ============================================================================ where the model is
def is_model_folder(folder: Path) -> bool:
    """Ours (``dsvl_config.json``) or a DeepSeek-VL folder (``config.json``, original or transformers)."""
    return (folder / OUR_CONFIG).is_file() or (folder / "config.json").is_file()


def resolve_model_folder(path: str | Path) -> tuple[Path, str]:
    """The model folder behind ``path`` and a phrase saying how it was found.

    Order matters: a folder that is itself a model wins, then a stage folder's ``model/``, then the
    last finished stage of a pipeline output. A stage counts as finished once its ``model/`` holds
    a config: the pipeline writes ``model/`` when the stage ends (atomically), never halfway.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ChatError(f"{folder} does not exist; pass a pipeline output (e.g. runs/demo from "
                        f"`dsvl-lab pipeline --out runs/demo`), one stage's folder, or a model folder on disk")
    if not folder.is_dir():
        raise ChatError(f"{folder} is a file; --checkpoint takes a folder (a pipeline output, a stage folder "
                        f"or a model folder)")
    if is_model_folder(folder):
        return folder, "model folder"
    if is_model_folder(folder / "model"):
        return folder / "model", f"the model of stage folder {folder.name}"
    finished = [stage for stage in STAGES if is_model_folder(folder / stage / "model")]
    if finished:
        return folder / finished[-1] / "model", f"{finished[-1]}, the last finished stage of {folder}"
    started = [stage for stage in STAGES if (folder / stage).is_dir()]
    if started:
        raise ChatError(f"{folder} is a pipeline output but no stage has finished ({', '.join(started)} have no "
                        f"model/ yet); wait for stage 1 to end or rerun `dsvl-lab pipeline`")
    raise ChatError(f"{folder} is not a model folder: it has no {OUR_CONFIG} (save_pretrained), no config.json "
                    f"(DeepSeek-VL), no model/ and no finished stage ({'/model, '.join(STAGES)}/model); point "
                    f"--checkpoint at a pipeline output, a stage folder or a model folder")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or "auto": CUDA if present, else Apple MPS, else CPU (never a device hard-coded into the code)."""
    if device not in (None, "auto"):
        return checked_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def checked_device(name: str | torch.device) -> torch.device:
    """A device the user named, refused clearly when this machine does not have it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ChatError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    present = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present.get(device.type, True):
        raise ChatError(f"device {name!r} was asked for but torch sees no {device.type.upper()} here; "
                        f"use --device auto (or cpu)")
    return device


# ============================================================================ loading
def load_chat_model(path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                    ) -> tuple[torch.nn.Module, DSVLProcessor, str]:
    """(model in eval mode on ``device``, its processor, a one-line description of what was loaded).

    ``dtype=None`` keeps the stored dtype (a released 7B is bf16, our miniatures fp32).
    """
    folder, found = resolve_model_folder(path)
    device = pick_device(device)  # before loading: a wrong --device should not cost a 7B load
    fmt = detect_format(folder)
    with contextlib.redirect_stdout(sys.stderr):  # loading notes to stderr: stdout is for the answer
        model = load_pretrained(folder, dtype=dtype)  # "raw" pixels: the convention of our processor
    processor = load_processor(folder, fmt, model)
    model = model.to(device).eval()
    parameter = next(model.parameters())
    description = (f"{folder} ({found}; {FORMATS[fmt]} format, {model.config.name}, {model.num_params() / 1e6:,.2f}M "
                   f"parameters) on {parameter.device.type} in {str(parameter.dtype).removeprefix('torch.')}")
    return model, processor, description


def load_processor(folder: Path, fmt: str, model) -> DSVLProcessor:
    """Our folders use the shipped tokenizer (or a tokenizer.json saved beside them); real ones their own."""
    if fmt == "ours":
        tokenizer = folder / "tokenizer.json"
        return DSVLProcessor.from_config(model.config, tokenizer if tokenizer.is_file() else None)
    processor = DSVLProcessor.from_pretrained(folder)
    check_processor_fits(processor, model, folder)
    return processor


def check_processor_fits(processor: DSVLProcessor, model, folder: Path) -> None:
    """A DeepSeek-VL folder's JSON files and its weights must agree, or the answer is silent nonsense."""
    config = model.config
    pairs = {"image token id": (processor.image_token_id, config.image_token_id),
             "image tokens per image": (processor.num_image_tokens, config.num_image_tokens),
             "image size": (processor.image_size, config.image_size)}
    for what, (from_processor, from_model) in pairs.items():
        if from_processor != from_model:
            raise ChatError(f"{folder}: the processor files say {what} = {from_processor} but the model config "
                            f"says {from_model}; the folder mixes files of two checkpoints, re-copy it whole")


# ============================================================================ conversations
def user_turn(prompt: str, image=None) -> dict:
    """One user message; with an image, ``<image_placeholder>`` goes first unless the prompt places it."""
    if image is None:
        return {"role": "user", "content": prompt}
    content = prompt if IMAGE_TOKEN in prompt else IMAGE_TOKEN + prompt
    return {"role": "user", "content": content, "images": [image]}


def check_image_file(image) -> None:
    """Fail before loading a model (which can take minutes) when an image path is wrong."""
    if isinstance(image, (str, Path)) and not Path(image).is_file():
        raise ChatError(f"image file {image} does not exist; give the path of a PNG or JPEG file "
                        f"(or leave --image out for a text-only chat)")


def as_conversation(conversation_or_prompt: str | Sequence[dict], image=None) -> list[dict]:
    if isinstance(conversation_or_prompt, str):
        check_image_file(image)
        return [user_turn(conversation_or_prompt, image)]
    if image is not None:
        raise ChatError("image= goes with a prompt string; in a conversation put the image in a message's "
                        "'images' list (user_turn(prompt, image) builds one)")
    return list(conversation_or_prompt)


# ============================================================================ streaming text
class AnswerStreamer:
    """Token ids in, new text out, correct for byte-level BPE: the ``streamer`` of ``generate``.

    What transformers' ``TextIteratorStreamer`` does in the original's cli_chat.py: it streams the
    answer being generated to the screen (``write``), piece by piece.

    A token is a piece of UTF-8 *bytes*: "é" or an emoji can be split over two tokens, and
    decoding one token alone gives a replacement character. So each step decodes the whole
    answer so far and sends only the part not sent yet, holding back an unfinished character.
    The leading space belongs to the template (``"Assistant: answer"``), so it is dropped.
    """

    def __init__(self, processor: DSVLProcessor, write: Callable[[str], None] | None = None) -> None:
        self.processor = processor
        self.write = write
        self.ids: list[int] = []
        self.sent = ""

    def text(self) -> str:
        return self.processor.decode(self.ids).lstrip()

    def __call__(self, step_tokens: torch.Tensor) -> None:
        """The ``streamer`` of ``DSVLModel.generate``: this step's tokens [1]."""
        token = int(step_tokens[0])
        if token == self.processor.eos_token_id:
            return
        self.ids.append(token)
        text = self.text()
        if not text.endswith("\ufffd"):  # U+FFFD: the bytes of a character are not all here yet
            self.send(text)

    def send(self, text: str) -> None:
        new = text[len(self.sent):] if text.startswith(self.sent) else text  # decoding is prefix-stable
        self.sent = text
        if new and self.write is not None:
            self.write(new)

    def finish(self) -> str:
        """Send what was held back and return the whole answer."""
        self.send(self.text())
        return self.sent


# ============================================================================ one answer
def chat(model, processor: DSVLProcessor, conversation_or_prompt: str | Sequence[dict], image=None,
         max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, stream: Callable[[str], None] | None = None,
         do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
         seed: int | None = None) -> str:
    """The model's answer to a prompt (with an optional image) or to a whole conversation.

    ``stream`` is called with each new piece of text as it is generated; the pieces joined equal
    the returned answer. Greedy unless ``do_sample=True`` (then ``seed`` makes it repeatable).
    """
    conversation = as_conversation(conversation_or_prompt, image)
    encoded = processor.encode_conversation(conversation, add_generation_prompt=True)
    check_room(len(encoded.input_ids), max_new_tokens, model)
    parameter = next(model.parameters())
    input_ids = torch.tensor([encoded.input_ids], device=parameter.device)
    pixels = processor.process_images(encoded.images).to(parameter.device, parameter.dtype)
    generator = None
    if do_sample and seed is not None:
        generator = torch.Generator(device=parameter.device).manual_seed(seed)
    text = AnswerStreamer(processor, stream)
    model.generate(input_ids, pixel_values=pixels if encoded.images else None, max_new_tokens=max_new_tokens,
                   do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k,
                   generator=generator, streamer=text)
    return text.finish()


def check_room(prompt_length: int, max_new_tokens: int, model) -> None:
    """Prompt and answer must fit the context; say so before the vision tower runs."""
    if max_new_tokens < 1:
        raise ChatError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    limit = model.config.llm.max_position_embeddings
    if prompt_length + max_new_tokens > limit:
        raise ChatError(f"the prompt is {prompt_length} tokens and the answer may take {max_new_tokens} more, "
                        f"over the model's context of {limit}; shorten the prompt (or the conversation) or "
                        f"lower --max-new-tokens")


# ============================================================================ a conversation
def repl(model, processor: DSVLProcessor, image=None, first_prompt: str | None = None,
         read: Callable[[str], str] | None = None, write: Callable[[str], None] | None = None,
         **generation) -> list[dict]:
    """Read prompts until end of input (Ctrl-D) or "exit"; each answer continues the conversation.

    The image goes with the first turn, as in the original CLI. A turn that fails (e.g. the
    conversation outgrew the context) is reported and dropped, so the session goes on.
    Returns the conversation.
    """
    read = read or input  # looked up at call time, so a test (or a notebook) can replace input()
    write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    conversation: list[dict] = []
    if first_prompt:
        write(f"User: {first_prompt}\n")  # typed prompts echo themselves; show the one from --prompt
    for prompt in prompts(read, first_prompt):
        turn = user_turn(prompt, image if not conversation else None)
        write("Assistant: ")
        try:
            answer = chat(model, processor, conversation + [turn], stream=write, **generation)
        except ValueError as error:  # ChatError, ProcessorError, a context overflow
            write(f"\n(error: {error})\n")
            continue
        write("\n")
        conversation += [turn, {"role": "assistant", "content": answer}]
    write("\n")  # leave the terminal on a fresh line after Ctrl-D
    return conversation


def prompts(read: Callable[[str], str], first: str | None = None) -> Iterable[str]:
    """The user's prompts: ``first`` (from --prompt) and then lines read until EOF or an exit word."""
    if first:
        yield first
    while True:
        try:
            line = read("User: ").strip()
        except (EOFError, KeyboardInterrupt):
            return
        if line.lower() in EXIT_WORDS:
            return
        if line:
            yield line
