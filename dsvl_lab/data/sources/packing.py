"""Language-only samples from a user's text source, packed to the full sequence length.

The paper packs its text (DeepSeek-LLM's pre-training style): documents are joined, each ended by
EOS, and the stream is cut into sequences of exactly ``seq_len`` tokens, so no token is padding.
Here a sample starts at a drawn document (a drawn token offset inside it, so every part of a long
document can be read), then continues with the documents that follow it in the same split until
the sequence is full. Only the documents a sample touches are read and tokenised: the corpus can
be far larger than memory, and the sample is still a pure function of its seed.
"""
from __future__ import annotations

import random
from typing import Callable

import numpy as np

from ..jsonl.errors import DataError
from .mixture import OpenSource
from .records import text_of

MAX_DOCUMENTS = 10_000  # documents one sample may touch (a corpus of empty rows must not loop)


def packed_tokens(source: OpenSource, seed: int, length: int, split: str, tokenize: Callable[[str], list[int]],
                  on_bad: Callable[[DataError], None]) -> np.ndarray:
    """``length`` token ids: from a drawn offset of a drawn document, then the next documents, EOS-separated.

    ``tokenize(text)`` returns the ids of a document with EOS at its end; ``on_bad(error)`` is told
    about each bad row (it raises, or counts and returns to skip it).
    """
    rng = random.Random(seed)
    row = source.pick(rng, split)
    tokens: list[int] = []
    first = True
    for _ in range(MAX_DOCUMENTS):
        try:
            ids = tokenize(text_of(*source.rows.get(row), source.spec.text_field))
        except DataError as error:
            on_bad(error)
            ids = []
        if first and ids:
            ids = ids[rng.randrange(len(ids)):]  # start anywhere in the first document
            first = False
        tokens += ids[:length - len(tokens)]
        if len(tokens) == length:
            return np.asarray(tokens, dtype=np.int32)
        row = source.next_in_split(row, split)
    raise DataError(f"source {source.label!r}: {MAX_DOCUMENTS} documents gave fewer than {length} tokens; are "
                    f"its rows empty?", source=str(source.spec.path), key="text")
