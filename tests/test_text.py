"""The language-only corpus (dsvl_lab.data.corpus) and the language evaluation (dsvl_lab.data.lm_eval)."""
import math
import re
from pathlib import Path

import pytest
import torch

from dsvl_lab.data import corpus as corpus_module
from dsvl_lab.data.corpus import (HELDOUT_FRACTION, TextCorpus, collect_documents, evaluation_texts, load_corpus,
                                  paragraphs, split_documents, train_texts)
from dsvl_lab.data.lm_eval import (ClozeItem, build_cloze, chance_level, band_of, perplexity, score_cloze,
                                   sequence_nll, unigram_perplexity, word_frequencies)
from dsvl_lab.model import DSVLModel
from dsvl_lab.processor import DSVLProcessor

PACKAGE = Path(corpus_module.__file__).resolve().parent.parent
MICRO = "dsvl-micro-siglip"


@pytest.fixture(scope="module")
def corpus() -> TextCorpus:
    return load_corpus()


@pytest.fixture(scope="module")
def processor():
    return DSVLProcessor.from_config(DSVLModel.from_name(MICRO).config)


@pytest.fixture(scope="module")
def heldout_sample(corpus):
    """A slice of the held-out text, enough for a perplexity and quick to score."""
    return list(corpus.heldout[:6])


@pytest.fixture
def one_thread():
    """Run a micro model on one thread: its 64-wide matmuls gain nothing from more, and on a busy
    CPU (CI, a shared machine) OpenMP threads spin-wait on each other and make a 2 s test take 20 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_micro(seed: int = 0) -> DSVLModel:
    torch.manual_seed(seed)
    return DSVLModel.from_name(MICRO).eval()


# ============================================================================ the corpus and its split

def test_split_is_deterministic(corpus):
    again = load_corpus.__wrapped__()  # bypass the cache: collect and split from scratch
    assert again.train == corpus.train and again.heldout == corpus.heldout
    assert again.split_info == corpus.split_info
    assert corpus.split_info["python_version"].count(".") == 2
    assert re.fullmatch(r"[0-9a-f]{64}", corpus.split_info["heldout_sha256"])


def test_split_is_disjoint_down_to_paragraphs(corpus):
    train_joined = "\n\0\n".join(corpus.train)
    for document in corpus.heldout:
        assert document not in train_joined
    train_paragraphs = {p.strip() for d in corpus.train for p in paragraphs(d)}
    heldout_paragraphs = {p.strip() for d in corpus.heldout for p in paragraphs(d)}
    assert not train_paragraphs & heldout_paragraphs


def test_split_is_decided_by_the_text_not_the_order(corpus):
    documents = collect_documents()
    train, heldout = split_documents(documents[::-1], HELDOUT_FRACTION)
    assert set(heldout) == set(corpus.heldout) and set(train) == set(corpus.train)
    # Dropping documents moves none of the others across the split.
    train, heldout = split_documents(documents[::2], HELDOUT_FRACTION)
    assert set(heldout) <= set(corpus.heldout)


def test_sizes_are_plausible(corpus):
    stats = corpus.stats()
    assert stats["train"]["characters"] > 300_000 and stats["train"]["words"] > 50_000
    assert stats["heldout"]["characters"] > 30_000 and stats["heldout"]["documents"] >= 40
    share = stats["heldout"]["documents"] / (stats["heldout"]["documents"] + stats["train"]["documents"])
    assert 0.5 * HELDOUT_FRACTION < share < 2 * HELDOUT_FRACTION
    assert train_texts() == list(corpus.train) and evaluation_texts() == list(corpus.heldout)
    assert any("The " in d for d in corpus.train)


def test_only_the_evaluation_reads_the_heldout_split():
    """Training code must never see held-out text: only the evaluation code may name it.

    corpus.py defines the split, lm_eval.py scores it, datamodule.py builds the validation
    batches from it (scored under no_grad, never stepped on) and foundation/lm.py's learning-curve
    callback scores perplexity on it. fresh_text.py reads it only to drop its paragraphs from the
    fresh corpus (and defines that corpus's own held-out split). Any other reader needs a review.
    """
    allowed = {"data/corpus.py", "data/lm_eval.py", "data/datamodule.py", "foundation/lm.py", "data/fresh_text.py"}
    readers = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
               if re.search(r"evaluation_texts|\.heldout\b", path.read_text(encoding="utf-8"))]
    assert sorted(r for r in readers if r.replace("\\", "/") not in allowed) == []


# ============================================================================ cloze items

@pytest.mark.parametrize("kind", ["word", "ending"])
def test_cloze_items_are_deterministic_and_well_formed(corpus, kind):
    items = build_cloze(corpus.heldout, 50, n_choices=4, seed=0, kind=kind)
    assert items == build_cloze(corpus.heldout, 50, n_choices=4, seed=0, kind=kind)
    assert items != build_cloze(corpus.heldout, 50, n_choices=4, seed=1, kind=kind)
    assert len(items) == 50
    heldout_prose = " ".join(" ".join(d.split()) for d in corpus.heldout)
    for item in items:
        assert len(item.choices) == 4 and len(set(item.choices)) == 4
        assert 0 <= item.answer_index < 4 and item.kind == kind
        assert all(c.startswith(" ") and c.strip() for c in item.choices)
        # The true answer continues the context exactly as the held-out text does.
        tail = " ".join(item.context.split()[-3:])
        assert tail + item.choices[item.answer_index] in heldout_prose
    assert len({item.answer_index for item in items}) == 4  # the answer is not always in one slot
    assert chance_level(4) == 0.25 and chance_level(5) == 0.2


def test_word_distractors_match_length_and_frequency(corpus):
    frequencies = word_frequencies(corpus.heldout)
    for item in build_cloze(corpus.heldout, 100, seed=0, kind="word"):
        words = [c.strip() for c in item.choices]
        buckets = {band_of(w, frequencies)[0] for w in words}
        bands = [band_of(w, frequencies)[1] for w in words]
        assert len(buckets) == 1  # same length bucket
        assert max(bands) - min(bands) <= 6  # within a factor of 2**3 either side of the answer


def test_cloze_refuses_bad_arguments(corpus):
    with pytest.raises(ValueError, match="kind"):
        build_cloze(corpus.heldout, 5, kind="essay")
    with pytest.raises(ValueError, match="n_choices"):
        build_cloze(corpus.heldout, 5, n_choices=1)


# ============================================================================ scoring

class FavouringModel(torch.nn.Module):
    """A stand-in language model whose logits favour a fixed set of token ids everywhere."""

    def __init__(self, config, favoured: set[int]) -> None:
        super().__init__()
        self.config = config
        self.bias = torch.nn.Parameter(torch.zeros(config.llm.vocab_size))
        with torch.no_grad():
            self.bias[sorted(favoured)] = 10.0

    def forward(self, input_ids, **unused):
        return type("Out", (), {"logits": self.bias.expand(*input_ids.shape, -1)})()


def test_score_cloze_picks_the_choice_the_model_prefers(processor):
    config = DSVLModel.from_name(MICRO).config
    items = [ClozeItem("The cat sat on the", [" mat", " sky"], 0),
             ClozeItem("We sailed across the", [" mat", " sky"], 1)]
    mat = set(processor.encode_text(" mat", add_bos=False))
    sky = set(processor.encode_text(" sky", add_bos=False))
    assert score_cloze(FavouringModel(config, mat), processor, items) == 0.5
    assert score_cloze(FavouringModel(config, sky), processor, items, length_normalized=False) == 0.5
    assert score_cloze(FavouringModel(config, mat), processor, items[:1]) == 1.0
    assert score_cloze(FavouringModel(config, sky), processor, items[:1]) == 0.0


def test_right_padding_does_not_change_a_sequence_score():
    model = random_micro()
    short, long = [0, 11, 12, 13], [0, 21, 22, 23, 24, 25, 26, 27]
    alone = sequence_nll(model, [short], [1])[0]
    batched = sequence_nll(model, [long, short], [1, 1])[1]
    assert alone[1] == batched[1] == 3
    assert alone[0] == pytest.approx(batched[0], rel=1e-5)


def test_perplexity_is_the_exponential_of_the_model_loss(processor):
    model = random_micro()
    text = "The operations in the following table are supported by most sequence types."
    ids = torch.tensor([processor.encode_text(text)])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert perplexity(model, processor, [text]) == pytest.approx(math.exp(loss.item()), rel=1e-4)


def test_unigram_baseline_beats_uniform_guessing(corpus, processor, heldout_sample):
    vocab = processor.tokenizer.get_vocab_size()
    value = unigram_perplexity(processor, corpus.train, heldout_sample)
    assert 50 < value < vocab / 2


def test_random_model_perplexity_is_about_the_vocabulary_size(processor, heldout_sample, one_thread):
    value = perplexity(random_micro(), processor, heldout_sample, max_length=128)
    vocab = processor.tokenizer.get_vocab_size()
    assert math.isfinite(value) and vocab / 2 < value < vocab * 3


def test_training_on_the_train_split_lowers_heldout_perplexity(processor, heldout_sample, one_thread):
    """30 steps on train text only (never held-out) already beat the random initialisation."""
    model = random_micro(seed=1)
    before = perplexity(model, processor, heldout_sample, max_length=128)
    stream = torch.tensor([t for text in train_texts()[:200] for t in processor.encode_text(text, add_eos=True)])
    optimizer = torch.optim.AdamW(model.language_model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(30):
        starts = torch.randint(0, len(stream) - 64, (8,), generator=generator)
        batch = torch.stack([stream[s:s + 64] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = perplexity(model, processor, heldout_sample, max_length=128)
    assert after < 0.5 * before


def test_the_split_does_not_depend_on_what_was_imported_first():
    """Packages may attach methods to stdlib classes at import (transformers does, to logging.Logger)."""
    import subprocess
    import sys

    probe = "from dsvl_lab.data.corpus import load_corpus; i = load_corpus().split_info; " \
            "print(i['train_sha256'], i['heldout_sha256'])"
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    after = subprocess.run([sys.executable, "-c", "import transformers, lightning; " + probe],
                           capture_output=True, text=True, check=True).stdout
    assert plain == after
