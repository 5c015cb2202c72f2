"""The miniature tokenizer: a 4096-entry byte-level BPE with DeepSeek's special tokens at ids 0..3.

The real DeepSeek-LLM tokenizer (a ``LlamaTokenizerFast`` in the original code) is a byte-level BPE
with about 100k entries; its special tokens sit at the end (BOS 100000, EOS 100001, the image tag
``<image_placeholder>`` near 100015). The miniature models use the same *kind* of tokenizer, small
enough for a CPU. Its four special tokens sit at the start instead, at the ids the miniature
presets expect (``config.MINI_TOKENS``):

    0  <｜begin▁of▁sentence｜>   BOS
    1  <｜end▁of▁sentence｜>     EOS
    2  <pad>                     padding
    3  <image_placeholder>       one per image in a prompt; the processor expands it

It is trained on what the miniature models will read, and nothing they are tested on:

* the **train split** of the language corpus (:mod:`dsvl_lab.data.corpus`: the ``pydoc_data``
  help topics and standard-library docstrings). Never the held-out split: a tokenizer fitted to
  the evaluation text would flatter the held-out perplexity;
* the **task texts**: captions, questions, answers and options of a few hundred generated
  samples per task family and detail level (:mod:`dsvl_lab.data.tasks`), so that words such as
  "hatched" or a chart's labels are single tokens.

There is deliberately no post-processor that adds BOS/EOS: like the original VLChatProcessor,
our processor adds BOS itself, so that it knows exactly where every token came from (labels).

Training is deterministic: the same texts give a byte-identical file. Ship or rebuild it with::

    python -m dsvl_lab.data.tokenizer --out data_samples/tokenizer/tokenizer.json --vocab-size 4096

Real presets (dsvl-1.3b, dsvl-7b) use the ``tokenizer.json`` of the user's checkpoint folder instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..artifacts import file_sha256
from ..atomic import write_text_atomic
from ..config import BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, MINI_TOKENS, MINI_VOCAB, PAD_TOKEN
from .corpus import train_texts  # the train split only: the held-out text is never fitted
from .tasks import DETAILS, FAMILIES, generate_samples

# Order matters: the BPE trainer gives special tokens the first ids, in this order (0, 1, 2, 3).
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN)
EXPECTED_IDS = {
    BOS_TOKEN: MINI_TOKENS["bos_token_id"],
    EOS_TOKEN: MINI_TOKENS["eos_token_id"],
    PAD_TOKEN: MINI_TOKENS["pad_token_id"],
    IMAGE_TOKEN: MINI_TOKENS["image_token_id"],
}

DATA_SAMPLES = Path(__file__).resolve().parent.parent.parent / "data_samples"
SHIPPED_TOKENIZER = DATA_SAMPLES / "tokenizer" / "tokenizer.json"


TASK_SAMPLES = 200  # generated samples per task family and detail level that the tokenizer reads
TASK_IMAGE_SIZE = 64  # the smallest size the generators allow: the pixels are thrown away, only text is used


def task_texts(samples: int = TASK_SAMPLES, image_size: int = TASK_IMAGE_SIZE) -> list[str]:
    """Captions, questions, answers and options of ``samples`` generated samples per family and detail.

    Seeds 0..samples-1 of every (family, detail), in the fixed order of ``FAMILIES`` and
    ``DETAILS``, so the list is the same on every run. A generator that fails raises;
    :func:`training_texts` turns that into a loud warning.
    """
    texts = []
    for family in FAMILIES:
        for detail in DETAILS:
            for sample in generate_samples(family, samples, start_seed=0, detail=detail, image_size=image_size):
                texts.append(sample.caption)
                for qa in sample.qa:
                    texts += [qa.question, qa.answer, *qa.options]
    return texts


def training_texts(task_samples: int = TASK_SAMPLES) -> tuple[list[str], dict[str, int]]:
    """(texts, how many came from each source): the corpus train split, then the task texts.

    ``task_samples=0`` skips the tasks. If the task generators fail, the tokenizer is
    trained on the corpus alone and a warning says so on stderr: a tokenizer without the task
    words still works, it just splits them into more tokens.
    """
    texts = train_texts()
    counts = {"corpus_documents": len(texts), "task_texts": 0}
    if task_samples > 0:
        try:
            tasks = task_texts(task_samples)
        except Exception as err:  # a generator bug should not stop the corpus part
            print(f"WARNING: the task texts are left out of the tokenizer ({type(err).__name__}: {err}); "
                  f"the tokenizer is trained on the language corpus alone", file=sys.stderr)
        else:
            texts += tasks
            counts["task_texts"] = len(tasks)
    return texts, counts


def new_byte_level_bpe() -> Tokenizer:
    """An untrained byte-level BPE: every byte is a symbol, so any text can be encoded (no <unk>)."""
    tokenizer = Tokenizer(models.BPE())
    # GPT-2 style pre-tokenisation: words keep their leading space ("Ġword"), digits and
    # punctuation are split apart. add_prefix_space=False so "hello" at the start of a text and
    # " hello" inside it stay different tokens, as in the real DeepSeek tokenizer.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    # The ByteLevel decoder maps the byte symbols back to UTF-8, so decode(encode(text)) == text.
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = MINI_VOCAB,
                    out_path: str | os.PathLike | None = None) -> Tokenizer:
    """Train a byte-level BPE on ``texts``; special tokens get ids 0..3; optionally save atomically.

    >>> tok = train_tokenizer(["a tiny corpus of words"], vocab_size=300)
    >>> [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    [0, 1, 2, 3]
    """
    minimum = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is too small: the 4 special tokens and 256 byte symbols "
                         f"alone need {minimum}; use at least {minimum} (the presets use {MINI_VOCAB})")
    tokenizer = new_byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        # special=True: never split, skipped by decode(skip_special_tokens=True);
        # normalized=False: matched verbatim in the text (so "<image_placeholder>" is always id 3).
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        # Seed all 256 bytes, even ones absent from the corpus, so no text is ever unencodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    check_special_tokens(tokenizer)
    if out_path is not None:
        save_tokenizer(tokenizer, out_path)
    return tokenizer


def check_special_tokens(tokenizer: Tokenizer) -> None:
    """Raise ValueError unless each special token is a single token at its miniature id (0..3)."""
    for token, expected in EXPECTED_IDS.items():
        found = tokenizer.token_to_id(token)
        if found != expected:
            raise ValueError(f"special token {token!r} has id {found}, the miniature presets need {expected}; "
                             f"retrain with dsvl_lab.data.tokenizer.train_tokenizer")


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> Path:
    """Write tokenizer.json atomically: a crash half-way leaves the previous file intact."""
    return write_text_atomic(path, tokenizer.to_str(pretty=True))


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a ``tokenizer.json`` (ours, or a real DeepSeek checkpoint's) or a folder holding one.

    Padding and truncation settings stored in the file are switched off: the processor pads
    (on the left) and checks the length itself.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}; pass the path of a tokenizer.json, or build the "
                                f"miniature one with: python -m dsvl_lab.data.tokenizer --out {path}")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust library raises a bare Exception on malformed JSON
        raise ValueError(f"{path} is not a readable tokenizer.json ({err}); re-download or rebuild it") from err
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dsvl_lab.data.tokenizer",
        description="Train the miniature byte-level BPE tokenizer on the train split of the language corpus "
                    "(pydoc_data help topics + stdlib docstrings) and the task texts (captions, questions, "
                    "answers), and write tokenizer.json (special tokens at ids 0..3).",
        epilog="example:\n  python -m dsvl_lab.data.tokenizer "
               "--out data_samples/tokenizer/tokenizer.json --vocab-size 4096",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=SHIPPED_TOKENIZER,
                        help=f"where to write tokenizer.json (default: {SHIPPED_TOKENIZER})")
    parser.add_argument("--vocab-size", type=int, default=MINI_VOCAB,
                        help=f"entries including the 4 special tokens (default: {MINI_VOCAB}, what the presets use)")
    parser.add_argument("--task-samples", type=int, default=TASK_SAMPLES,
                        help=f"generated samples per task family and detail level whose texts join the "
                             f"training text (default: {TASK_SAMPLES}; 0 = corpus only)")
    args = parser.parse_args(argv)
    texts, counts = training_texts(args.task_samples)
    try:
        tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size, out_path=args.out)
    except ValueError as err:
        parser.error(str(err))
    print(f"trained on {counts['corpus_documents']} corpus documents (train split) and "
          f"{counts['task_texts']} task texts")
    print(f"wrote {args.out} ({tokenizer.get_vocab_size()} entries, sha256 {file_sha256(args.out)})")


if __name__ == "__main__":
    main()
