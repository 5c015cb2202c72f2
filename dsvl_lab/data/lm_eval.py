"""Language ability on held-out text: perplexity, a unigram baseline and a multiple-choice cloze test.

Paper: DeepSeek-VL's central worry is that multimodal training erodes the language model
(section 3.2, "the competitive dynamics between vision and language"; table 7 and figure 6). It
tracks language with held-out perplexity (the Pile-test curve) and with multiple-choice
benchmarks scored *by option perplexity*: HellaSwag (pick the ending of a sentence) and MMLU
(pick the answer), each option scored by the likelihood the model gives it, no generation.
This module is the miniature of both, on the held-out split of :mod:`dsvl_lab.data.corpus`:

* :func:`perplexity` — exp of the mean next-token loss on held-out text (the Pile-test number);
* :func:`unigram_perplexity` — the same number for a model that ignores context and predicts
  token frequencies (add-one smoothed). A language model is worth something only below it;
  a random model sits near the vocabulary size (4096), far above it;
* :func:`build_cloze` + :func:`score_cloze` — multiple choice by option likelihood. ``kind="word"``:
  a sentence prefix and the true next word among distractors of the same length and frequency
  band (so "always pick a common short word" cannot win); ``kind="ending"``: the true second
  half of a sentence among other sentences' second halves of the same length (HellaSwag's shape).
  Chance is ``1 / n_choices``.

:func:`evaluate_language` runs all of it and is the only reader of held-out text in the package.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .corpus import evaluation_texts, train_texts

DEFAULT_MAX_LENGTH = 256  # tokens per perplexity window, BOS included


# ============================================================================ token helpers

def tokenizer_of(processor_or_tokenizer: Any):
    """A DSVLProcessor or a bare ``tokenizers.Tokenizer`` -> the Tokenizer."""
    return getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)


def encode_all(processor_or_tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Plain token ids of each text: no BOS, no EOS (the ids every score here predicts)."""
    tokenizer = tokenizer_of(processor_or_tokenizer)
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def bos_id(processor: Any, model: Any) -> int:
    """The processor's BOS id; the model config's when given a bare tokenizer."""
    token_id = getattr(processor, "bos_token_id", None)
    return model.config.bos_token_id if token_id is None else token_id


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# ============================================================================ scoring sequences

@torch.no_grad()
def sequence_nll(model: torch.nn.Module, sequences: Sequence[Sequence[int]], score_from: Sequence[int],
                 batch_size: int = 16, progress: bool = False, desc: str = "scoring") -> list[tuple[float, int]]:
    """(summed NLL, number of scored tokens) of each sequence, counting tokens at positions >= score_from.

    Sequences are sorted by length and right-padded, so a batch wastes little compute. No attention
    mask is needed for right padding: the model is causal, so a real token never sees the padding
    after it, and positions still start at 0.
    """
    device = model_device(model)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc)
    was_training = model.training
    model.eval()  # no dropout; restored afterwards, so a validation hook can call this mid-training
    try:
        for batch in batches:
            score_batch(model, sequences, score_from, batch, results, device)
    finally:
        model.train(was_training)
    return results


def score_batch(model: torch.nn.Module, sequences: Sequence[Sequence[int]], score_from: Sequence[int],
                batch: list[int], results: list, device: torch.device) -> None:
    """Fill ``results[i]`` for each sequence ``i`` of one batch, right-padded to the longest."""
    width = max(len(sequences[i]) for i in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)  # the pad id is irrelevant: never scored
    scored = torch.zeros(len(batch), width, dtype=torch.bool)
    for row, i in enumerate(batch):
        ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
        scored[row, score_from[i]:len(sequences[i])] = True
    logits = model(input_ids=ids.to(device)).logits  # [B, T, vocab]
    # Position t predicts token t+1: drop the last logit and the first target. Only the scored
    # positions go through the loss, as rows of [n, vocab]: cross_entropy over a [B, vocab, T]
    # view (the transposed layout) runs several times slower on a CPU.
    mask = scored[:, 1:].to(device)  # [B, T-1]
    nll = F.cross_entropy(logits[:, :-1][mask].float(), ids[:, 1:].to(device)[mask], reduction="none")  # [n]
    sums = torch.zeros(len(batch), device=device).index_add_(0, mask.nonzero()[:, 0], nll).tolist()
    counts = mask.sum(1).tolist()
    for row, i in enumerate(batch):
        results[i] = (sums[row], int(counts[row]))


# ============================================================================ perplexity

def perplexity(model: torch.nn.Module, processor: Any, texts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH,
               batch_size: int = 16, progress: bool = False) -> float:
    """Token-level perplexity of a text-only model input: exp(mean NLL over all predicted tokens).

    Each text is tokenised, cut into windows of ``max_length - 1`` tokens, and each window is
    scored as ``BOS + window`` (BOS is given, never predicted). The miniature of the paper's
    Pile-test perplexity. Windows do not overlap, so a window's first tokens see little context:
    the number depends on ``max_length`` a little; compare models at the same setting.
    """
    max_length = min(max_length, model.config.llm.max_position_embeddings)
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (BOS + one token), got {max_length}")
    bos = bos_id(processor, model)
    sequences = [[bos] + ids[start:start + max_length - 1]
                 for ids in encode_all(processor, texts) for start in range(0, len(ids), max_length - 1)]
    if not sequences:
        raise ValueError("perplexity needs at least one non-empty text")
    scores = sequence_nll(model, sequences, [1] * len(sequences), batch_size, progress, "perplexity")
    total_nll, total_tokens = map(sum, zip(*scores))
    return math.exp(total_nll / total_tokens)


def unigram_perplexity(processor_or_tokenizer: Any, train: Sequence[str], evaluation: Sequence[str]) -> float:
    """Perplexity of the context-free baseline: p(token) = (count in train + 1) / (N + V).

    Same tokenizer, same predicted tokens as :func:`perplexity`, so the two numbers compare
    directly. Add-one (Laplace) smoothing gives tokens unseen in train a small probability instead
    of zero, which would make the perplexity infinite.
    """
    tokenizer = tokenizer_of(processor_or_tokenizer)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    counts = Counter(token for ids in encode_all(tokenizer, train) for token in ids)
    total = sum(counts.values())
    eval_ids = [token for ids in encode_all(tokenizer, evaluation) for token in ids]
    if not eval_ids:
        raise ValueError("unigram_perplexity needs at least one non-empty evaluation text")
    nll = -sum(math.log((counts[t] + 1) / (total + vocab)) for t in eval_ids)
    return math.exp(nll / len(eval_ids))


# ============================================================================ cloze items

@dataclass(frozen=True)
class ClozeItem:
    """One multiple-choice question: which choice continues ``context``? ``choices[answer_index]`` does.

    Each choice starts with the space that separates it from the context, so that
    ``context + choice`` is the original text for the true answer.
    """

    context: str
    choices: list[str]
    answer_index: int
    kind: str = "word"


def chance_level(n_choices: int = 4) -> float:
    """Accuracy of guessing: 1 / n_choices."""
    return 1.0 / n_choices


WORD = re.compile(r"[a-z]+")  # a target word: plain lower-case letters
PLAIN_WORD = re.compile(r"[A-Za-z]+[,.;:]?")  # what a prose sentence is mostly made of
PUNCTUATION = ",.;:!?()[]\"'"


def prose_sentences(texts: Sequence[str]) -> list[tuple[str, str]]:
    """(previous sentence or "", sentence) for each prose sentence of the texts, in order.

    Prose means: a paragraph without indented lines (code, tables and examples are indented in the
    help topics and docstrings), sentences of 8 to 40 words ending with a full stop, at least
    three quarters of them plain words.
    """
    found = []
    for text in texts:
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if not lines or any(line[:1].isspace() or line.startswith((">>>", "|", "+")) for line in lines):
                continue
            previous = ""
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(lines)):
                words = sentence.split()
                plain = sum(bool(PLAIN_WORD.fullmatch(w)) for w in words)
                if 8 <= len(words) <= 40 and sentence.endswith(".") and plain >= 0.75 * len(words):
                    found.append((previous, sentence))
                previous = sentence
    return found


def plain_word(token: str) -> str | None:
    """A whitespace-separated token as a lower-case word ("object," -> "object"), or None ("Like", "x+y")."""
    word = token.strip(PUNCTUATION)
    return word if WORD.fullmatch(word) else None


def word_frequencies(texts: Sequence[str]) -> Counter:
    """How often each lower-case word occurs as a whole word (punctuation stripped) in the texts."""
    return Counter(w for text in texts for w in map(plain_word, text.split()) if w)


def band_of(word: str, frequencies: Counter) -> tuple[int, int]:
    """(length bucket, frequency band): words within a factor of 2 in frequency and similar length.

    Matching both stops two cheap strategies: picking the most frequent word (a unigram model's
    guess) and picking the shortest one (fewest tokens, so the smallest total loss).
    """
    length_bucket = min((len(word) - 1) // 2, 5)  # 1-2, 3-4, 5-6, 7-8, 9-10, 11+ letters
    return length_bucket, int(math.log2(frequencies[word]))


def word_pools(frequencies: Counter) -> dict[tuple[int, int], list[str]]:
    pools: dict[tuple[int, int], list[str]] = {}
    for word in sorted(frequencies):
        pools.setdefault(band_of(word, frequencies), []).append(word)
    return pools


def word_distractors(target: str, frequencies: Counter, pools: dict, k: int, rng: random.Random) -> list[str] | None:
    """k words of the target's length bucket and frequency band, widened one band at a time if needed."""
    length_bucket, band = band_of(target, frequencies)
    for width in range(4):
        candidates = [w for b in range(band - width, band + width + 1)
                      for w in pools.get((length_bucket, b), []) if w != target]
        if len(candidates) >= k:
            return rng.sample(candidates, k)
    return None


def word_item(previous: str, sentence: str, frequencies: Counter, pools: dict, n_choices: int,
              rng: random.Random) -> ClozeItem | None:
    """Cut the sentence before a random plain word (after at least 3 words) and ask for that word."""
    words = sentence.split()
    # Only a whole word (trailing punctuation aside), so that " word" is exactly what follows the context.
    positions = [i for i in range(3, len(words)) if WORD.fullmatch(words[i].rstrip(",.;:"))]
    rng.shuffle(positions)
    for i in positions:
        target = words[i].rstrip(",.;:")
        distractors = word_distractors(target, frequencies, pools, n_choices - 1, rng)
        if distractors is not None:
            context = (previous + " " if previous else "") + " ".join(words[:i])
            return shuffled_item(context, " " + target, [" " + d for d in distractors], "word", rng)
    return None


def ending_parts(sentence: str) -> tuple[str, str]:
    """(first half, " " + second half) of a sentence, cut at its middle word."""
    words = sentence.split()
    middle = len(words) // 2
    return " ".join(words[:middle]), " " + " ".join(words[middle:])


def ending_item(previous: str, sentence: str, endings_by_length: dict[int, list[str]], n_choices: int,
                rng: random.Random) -> ClozeItem | None:
    """HellaSwag's shape: the first half of a sentence; the true second half among other sentences' halves."""
    start, true_ending = ending_parts(sentence)
    length = len(true_ending.split())
    candidates = sorted({e for n in (length - 1, length, length + 1) for e in endings_by_length.get(n, [])}
                        - {true_ending})
    if len(candidates) < n_choices - 1:
        return None
    context = (previous + " " if previous else "") + start
    return shuffled_item(context, true_ending, rng.sample(candidates, n_choices - 1), "ending", rng)


def shuffled_item(context: str, answer: str, distractors: list[str], kind: str, rng: random.Random) -> ClozeItem:
    choices = [answer, *distractors]
    rng.shuffle(choices)
    return ClozeItem(context, choices, choices.index(answer), kind)


def build_cloze(texts: Sequence[str], n_items: int, n_choices: int = 4, seed: int = 0,
                kind: str = "word") -> list[ClozeItem]:
    """Deterministic multiple-choice items from ``texts`` (one per sentence, sentences drawn by ``seed``).

    ``kind="word"``: context = the previous sentence + a sentence prefix; choices = the true next
    word and ``n_choices - 1`` words of the same length bucket and frequency band in ``texts``.
    ``kind="ending"``: context = the previous sentence + the first half of a sentence; choices =
    its true second half and the second halves of other sentences with about as many words.
    Returns fewer than ``n_items`` items if the texts have too few usable sentences.
    """
    if kind not in ("word", "ending"):
        raise ValueError(f"kind must be 'word' or 'ending', not {kind!r}")
    if n_choices < 2:
        raise ValueError(f"n_choices must be at least 2, got {n_choices}")
    sentences = prose_sentences(texts)
    rng = random.Random(seed)
    frequencies = word_frequencies(texts)
    pools = word_pools(frequencies)
    endings: dict[int, list[str]] = {}
    for _, sentence in sentences:
        ending = ending_parts(sentence)[1]
        endings.setdefault(len(ending.split()), []).append(ending)
    items: list[ClozeItem] = []
    for index in rng.sample(range(len(sentences)), len(sentences)):
        if len(items) == n_items:
            break
        previous, sentence = sentences[index]
        if kind == "word":
            item = word_item(previous, sentence, frequencies, pools, n_choices, rng)
        else:
            item = ending_item(previous, sentence, endings, n_choices, rng)
        if item is not None and len(set(item.choices)) == n_choices:
            items.append(item)
    return items


# ============================================================================ cloze scoring

def score_cloze(model: torch.nn.Module, processor: Any, items: Sequence[ClozeItem], batch_size: int = 32,
                length_normalized: bool = True, max_length: int = DEFAULT_MAX_LENGTH,
                progress: bool = False) -> float:
    """Accuracy of picking, for each item, the choice with the lowest NLL given ``BOS + context``.

    This is multiple choice by option likelihood, as the paper scores HellaSwag and MMLU: no
    generation, each option's tokens are scored after the context. ``length_normalized=True``
    (default) compares the *mean* NLL per token of each choice, HellaSwag-style, so a choice that
    happens to take more tokens is not penalised for its length; ``False`` compares the total.
    """
    if not items:
        raise ValueError("score_cloze needs at least one item")
    bos = bos_id(processor, model)
    max_length = min(max_length, model.config.llm.max_position_embeddings)
    sequences, starts = [], []
    for item in items:
        choice_ids = encode_all(processor, item.choices)
        room = max_length - 1 - max(len(c) for c in choice_ids)
        if room < 1:
            raise ValueError(f"a choice of item {item.context[:40]!r}... is longer than max_length={max_length} tokens")
        context = [bos] + encode_all(processor, [item.context])[0][-room:]  # keep the end of a long context
        for ids in choice_ids:
            sequences.append(context + ids)
            starts.append(len(context))
    scores = sequence_nll(model, sequences, starts, batch_size, progress, "cloze")
    correct, k = 0, 0
    for item in items:
        losses = [total / count if length_normalized else total for total, count in scores[k:k + len(item.choices)]]
        correct += min(range(len(losses)), key=losses.__getitem__) == item.answer_index
        k += len(item.choices)
    return correct / len(items)


# ============================================================================ everything at once

def evaluate_language(model: torch.nn.Module, processor: Any, n_cloze: int = 200, n_choices: int = 4,
                      max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = 16, seed: int = 0,
                      progress: bool = False) -> dict[str, float]:
    """Language ability on the held-out split (the only text this reads besides train counts).

    Returns ``perplexity`` and its ``unigram_perplexity`` baseline (same tokens; lower is
    better), ``cloze_accuracy`` (next word, frequency- and length-matched distractors),
    ``ending_accuracy`` (sentence endings, HellaSwag-style) and ``cloze_chance`` = 1 / n_choices,
    plus the sizes behind them.
    """
    heldout = evaluation_texts()
    words = build_cloze(heldout, n_cloze, n_choices, seed, kind="word")
    endings = build_cloze(heldout, n_cloze, n_choices, seed, kind="ending")
    return {
        "perplexity": perplexity(model, processor, heldout, max_length, batch_size, progress),
        "unigram_perplexity": unigram_perplexity(processor, train_texts(), heldout),
        "cloze_accuracy": score_cloze(model, processor, words, 2 * batch_size, progress=progress),
        "ending_accuracy": score_cloze(model, processor, endings, 2 * batch_size, progress=progress),
        "cloze_chance": chance_level(n_choices),
        "cloze_items": len(words),
        "ending_items": len(endings),
        "heldout_tokens": sum(len(ids) for ids in encode_all(processor, heldout)),
    }


def heldout_perplexity(model: torch.nn.Module, processor: Any, batch_size: int = 16) -> float:
    """The held-out perplexity alone: the point a language curve logs every N steps during training.

    The same number as ``language_retention(...)["perplexity"]``; it lives here so that only the
    evaluation code names the held-out split (a training callback asks for the number, never the text).
    """
    return perplexity(model, processor, evaluation_texts(), DEFAULT_MAX_LENGTH, batch_size)


def language_retention(model: torch.nn.Module, processor: Any, n_cloze: int = 100, batch_size: int = 16,
                       seed: int = 0) -> dict[str, float]:
    """The quick language check a training stage runs: held-out perplexity and word-cloze accuracy.

    The same numbers as :func:`evaluate_language` (whose unigram baseline and sentence endings cost
    more and do not change while a VL model trains), on ``n_cloze`` word items.
    """
    heldout = evaluation_texts()
    words = build_cloze(heldout, n_cloze, 4, seed, kind="word")
    return {"perplexity": heldout_perplexity(model, processor, batch_size),
            "cloze_accuracy": score_cloze(model, processor, words, 2 * batch_size),
            "cloze_chance": chance_level(4), "cloze_items": len(words)}
