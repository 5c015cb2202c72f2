"""The fresh text source (dsvl_lab.data.fresh_text) and StageData.text_source.

Most tests harvest a few small modules (``SMALL_MODULES``: a couple of seconds); the full harvest
(~10 s) is checked once, under the ``slow`` mark.
"""
import re
from pathlib import Path

import pytest

from dsvl_lab.data import fresh_text
from dsvl_lab.data.corpus import HELDOUT_FRACTION, is_heldout, load_corpus, paragraphs
from dsvl_lab.data.fresh_text import clean_docstring, collect_fresh_documents, fresh_corpus, normalised
from dsvl_lab.data.stage_data import TEXT_SOURCES, StageData
from dsvl_lab.errors import InputError

PACKAGE = Path(fresh_text.__file__).resolve().parent.parent
SMALL_MODULES = ("PIL.ImageOps", "numpy.linalg", "scipy.integrate", "torch.optim")
ALL_MODULES = fresh_text.FRESH_MODULES  # the module-scoped fixture below patches FRESH_MODULES


@pytest.fixture(scope="module")
def small():
    """fresh_corpus() over SMALL_MODULES only (its cache cleared before and after)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fresh_text, "FRESH_MODULES", SMALL_MODULES)
        fresh_corpus.cache_clear()
        yield fresh_corpus()
    fresh_corpus.cache_clear()


def foundation_paragraphs() -> set[str]:
    corpus = load_corpus()
    return {normalised(p) for split in (corpus.train, corpus.heldout) for d in split for p in paragraphs(d)}


# ============================================================================ cleaning

NUMPYDOC = '''Sum of array elements over a given axis.

Parameters
----------
a : array_like
    Elements to sum, along the axis that the caller names.
axis : None or int, optional
    Axis or axes along which a sum is performed.

Notes
-----
Arithmetic is modular when using integer types, and no error is
raised on overflow. See :func:`numpy.add` and `~numpy.ufunc.reduce` [1]_.

.. math:: \\sum_i a_i

Examples
--------
>>> np.sum([0.5, 1.5])
2.0
This sentence belongs to the examples and goes with them.
'''


def test_cleaning_keeps_prose_and_drops_code_tables_and_markup():
    text = clean_docstring(NUMPYDOC)
    assert text.startswith("Sum of array elements over a given axis.")
    assert "Elements to sum, along the axis that the caller names." in text
    assert "See numpy.add and reduce." in text
    for gone in (">>>", "2.0", "----", "Parameters", "a : array_like", "optional", "math", "\\sum",
                 "[1]_", ":func:", "examples"):
        assert gone not in text, gone
    google = ("Scale a tensor by a factor.\n\nArgs:\n    input (Tensor): the tensor that is scaled in place.\n\n"
              "Example::\n\n    >>> scale(x)\n")
    assert clean_docstring(google) == "Scale a tensor by a factor.\n\nthe tensor that is scaled in place."


# ============================================================================ the split

def test_split_is_deterministic_and_follows_the_corpus_rule(small):
    again = fresh_corpus.__wrapped__()  # bypass the cache (FRESH_MODULES is still SMALL_MODULES)
    assert again.train == small.train and again.heldout == small.heldout
    assert again.split_info == small.split_info
    assert small.train and small.heldout
    assert all(is_heldout(d, HELDOUT_FRACTION) for d in small.heldout)
    assert not any(is_heldout(d, HELDOUT_FRACTION) for d in small.train)
    train = {normalised(p) for d in small.train for p in paragraphs(d)}
    heldout = {normalised(p) for d in small.heldout for p in paragraphs(d)}
    assert not train & heldout


def test_split_info_names_the_data(small):
    info = small.split_info
    assert info["modules"] == list(SMALL_MODULES) and info["skipped_modules"] == []
    assert {"numpy", "scipy", "pillow", "torch"} <= set(info["package_versions"])
    assert all(v != "missing" for v in info["package_versions"].values())
    assert re.fullmatch(r"[0-9a-f]{64}", info["train_sha256"]) and info["python_version"].count(".") == 2


def test_no_paragraph_is_shared_with_the_foundation_corpus(small):
    fresh = {normalised(p) for split in (small.train, small.heldout) for d in split for p in paragraphs(d)}
    assert fresh and not fresh & foundation_paragraphs()


def test_documents_are_prose_without_code(small):
    for document in small.train + small.heldout:
        assert len(document.split()) >= fresh_text.MIN_WORDS
        assert ">>>" not in document and "----" not in document and not re.search(r"^\.\.\s", document, re.M)
    assert len(set(small.train)) == len(small.train)
    assert all(len(p.split()) >= fresh_text.MIN_PARAGRAPH_WORDS for d in small.train for p in paragraphs(d))


def test_module_list_is_sorted_and_skips_what_fails_to_import(monkeypatch):
    assert list(ALL_MODULES) == sorted(set(ALL_MODULES))
    monkeypatch.setattr(fresh_text, "FRESH_MODULES", ("numpy.linalg", "no_such_package.sub"))
    skipped: list[str] = []
    assert collect_fresh_documents(skipped) and skipped == ["no_such_package.sub"]


# ============================================================================ who reads what

def test_training_code_never_reaches_the_fresh_heldout_split():
    """Only fresh_text.py may name the fresh held-out split; every other use of it reads ``.train``."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if path.name == "fresh_text.py" or "fresh" not in source:
            continue
        for match in re.finditer(r"fresh_corpus\(\)(\.\w+)?", source):
            if match.group(1) not in (".train", ".train_texts", ".split_info", ".stats"):
                offenders.append(f"{path.relative_to(PACKAGE)}: {match.group(0)}")
        if "fresh_corpus" in source and re.search(r"\.heldout\b", source):
            offenders.append(f"{path.relative_to(PACKAGE)}: .heldout")
    assert offenders == []


def test_text_source_fresh_streams_the_fresh_train_split(small):
    from dsvl_lab.data.datamodule import DSVLDataModule

    dm = DSVLDataModule("dsvl-micro-siglip", "stage2_joint", total_steps=2, val_batches=1, batch_size=2,
                        seq_len=64, text_source="fresh")
    dm.setup("fit")
    processor = dm.train_batches.processor
    expected = [t for text in small.train for t in processor.encode_text(text, add_bos=False, add_eos=True)]
    assert dm.train_batches.text.tokens.tolist() == expected
    assert dm.data.training_texts() == list(small.train)
    assert StageData(text_source="corpus").training_texts() == list(load_corpus().train)
    batch = next(dm.train_batches[s] for s in range(4) if dm.train_batches[s]["n_text"])
    assert batch["input_ids"].shape == (2, 64)


# ============================================================================ the setting

@pytest.mark.parametrize("value", ["wiki", "Fresh", None, ["fresh"]])
def test_a_bad_text_source_names_the_key(value):
    with pytest.raises(InputError, match=r"stage\.data\.text_source.*must be one of"):
        StageData(text_source=value)
    from dsvl_lab.training.spec import StageSpec

    with pytest.raises(InputError, match=r"stage\.yaml: stage\.data\.text_source"):
        StageSpec.from_dict({"name": "s", "trainable": ["aligner"], "learning_rate": 1e-3, "steps": 1,
                             "data": {"text_source": value}}, source="stage.yaml")


def test_the_default_changes_no_card_and_no_sweep_hash():
    """text_source is serialised only when it is not the default, so specs written before it still match."""
    from dsvl_lab.ablations.spec import resolve_run
    from dsvl_lab.training.spec import stage_spec

    assert TEXT_SOURCES[0] == StageData().text_source == "corpus"
    spec = stage_spec("stage2_joint")
    assert "text_source" not in spec.to_dict()["data"]
    assert spec.replace(data={"text_source": "fresh"}).to_dict()["data"]["text_source"] == "fresh"
    base = {"preset": "dsvl-tiny-hybrid"}
    default = resolve_run("s", "a", base, 0)
    explicit = resolve_run("s", "a", {**base, "stages.stage2_joint.data.text_source": "corpus"}, 0)
    fresh = resolve_run("s", "a", {**base, "stages.stage2_joint.data": {"text_source": "fresh"}}, 0)
    assert default.hash == explicit.hash != fresh.hash
    assert default.prefix_key(0) == fresh.prefix_key(0) and default.prefix_key(1) != fresh.prefix_key(1)
    assert fresh.stages[1].data.text_source == "fresh" and fresh.stages[2].data.text_source == "corpus"


# ============================================================================ the full harvest

@pytest.mark.slow
def test_the_full_harvest_is_large_enough_and_disjoint_from_the_foundation_corpus(monkeypatch):
    """A 400-step miniature stage 2 reads ~1.2M text tokens: the fresh train split must hold more."""
    from dsvl_lab.config import DSVLConfig
    from dsvl_lab.processor import DSVLProcessor

    monkeypatch.setattr(fresh_text, "FRESH_MODULES", ALL_MODULES)
    corpus = fresh_corpus.__wrapped__()  # not the cache, which may hold SMALL_MODULES' harvest
    assert corpus.split_info["modules"] == list(ALL_MODULES)
    processor = DSVLProcessor.from_config(DSVLConfig.from_name("dsvl-micro-siglip"))
    tokens = sum(len(e.ids) + 1 for e in processor.tokenizer.encode_batch(list(corpus.train), add_special_tokens=False))
    assert tokens > 1_500_000
    fresh = {normalised(p) for split in (corpus.train, corpus.heldout) for d in split for p in paragraphs(d)}
    assert not fresh & foundation_paragraphs()
    share = len(corpus.heldout) / (len(corpus.heldout) + len(corpus.train))
    assert 0.5 * HELDOUT_FRACTION < share < 2 * HELDOUT_FRACTION


@pytest.mark.slow
def test_the_harvest_does_not_depend_on_what_was_imported_first():
    """Lazy modules (filelock) and packages that patch others' classes must not change the text."""
    import subprocess
    import sys

    probe = "from dsvl_lab.data.fresh_text import fresh_corpus; i = fresh_corpus().split_info; " \
            "print(i['train_sha256'], i['heldout_sha256'])"
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    after = subprocess.run([sys.executable, "-c", "import transformers.modeling_utils, lightning; " + probe],
                           capture_output=True, text=True, check=True).stdout
    assert plain == after
