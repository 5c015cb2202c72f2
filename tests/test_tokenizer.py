"""The miniature byte-level BPE tokenizer (dsvl_lab.data.tokenizer) and the file shipped with it."""
import json

import pytest

from dsvl_lab.config import BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, MINI_TOKENS, MINI_VOCAB, PAD_TOKEN
from dsvl_lab.data.corpus import train_texts
from dsvl_lab.data.tokenizer import (SHIPPED_TOKENIZER, file_sha256, load_tokenizer, main,
                                     save_tokenizer, train_tokenizer, training_texts)

SPECIALS = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(SHIPPED_TOKENIZER)


def test_shipped_tokenizer_has_the_preset_vocab_size(tokenizer):
    assert SHIPPED_TOKENIZER.is_file()
    assert tokenizer.get_vocab_size(with_added_tokens=True) == MINI_VOCAB == 4096


def test_special_tokens_are_single_ids_0_to_3(tokenizer):
    assert [tokenizer.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    assert [MINI_TOKENS[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id", "image_token_id")] == [0, 1, 2, 3]
    for expected_id, token in enumerate(SPECIALS):
        assert tokenizer.encode(token, add_special_tokens=False).ids == [expected_id]
    # Inside running text too, the image tag is one id, never split into "<", "image", ...
    assert tokenizer.encode("see <image_placeholder> here", add_special_tokens=False).ids.count(3) == 1


def test_no_automatic_bos_or_eos(tokenizer):
    ids = tokenizer.encode("Hello world", add_special_tokens=True).ids
    assert 0 not in ids and 1 not in ids


@pytest.mark.parametrize("text", [
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces,\ttabs\nand\n\nnewlines  ",
    "naïve café — 東京 🙂 ∑ x² ≤ 3",
    "def f(x):\n    return x ** 2  # comment",
    "User: <image_placeholder>What is written?\n\nAssistant: hello<｜end▁of▁sentence｜>",
])
def test_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_byte_level_bpe_compresses_english(tokenizer):
    text = "The specification of the Python language describes the syntax of statements."
    assert len(tokenizer.encode(text).ids) < len(text.split()) * 2


def test_corpus_is_real_english_text():
    texts = train_texts()
    assert len(texts) > 50
    assert sum(len(t) for t in texts) > 400_000
    assert any("The " in t for t in texts)


def test_train_writes_a_loadable_file_with_specials_first(tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    tokenizer = train_tokenizer(train_texts(), vocab_size=400, out_path=path)
    assert tokenizer.get_vocab_size() == 400
    assert [tokenizer.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    loaded = load_tokenizer(path.parent)  # a folder works too
    text = "Assistant: the answer is 42."
    assert loaded.encode(text).ids == tokenizer.encode(text).ids
    assert json.loads(path.read_text())["post_processor"] is None
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, tokenizer, monkeypatch):
    path = save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    before = path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("dsvl_lab.data.tokenizer.os.replace", crash)
    with pytest.raises(OSError):
        save_tokenizer(tokenizer, path)
    assert path.read_text() == before
    assert list(tmp_path.iterdir()) == [path]


def test_too_small_vocab_is_refused():
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(["hello"], vocab_size=100)


def test_load_missing_file_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m dsvl_lab.data.tokenizer"):
        load_tokenizer(tmp_path / "nope.json")


def test_load_broken_file(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable tokenizer"):
        load_tokenizer(bad)


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "--vocab-size 4096" in out


def test_cli_trains_and_writes(tmp_path, capsys):
    out = tmp_path / "tok.json"
    main(["--out", str(out), "--vocab-size", "300", "--task-samples", "2"])  # 2 samples per task: quick
    assert load_tokenizer(out).get_vocab_size() == 300
    printed = capsys.readouterr().out
    assert "wrote" in printed and "sha256" in printed and "task texts" in printed


def test_training_is_byte_identical_for_the_same_texts():
    texts = train_texts()[:300]
    first = train_tokenizer(texts, vocab_size=500).to_str()
    assert train_tokenizer(texts, vocab_size=500).to_str() == first


def test_tokenizer_never_reads_the_heldout_split():
    from dsvl_lab.data.corpus import load_corpus

    texts, _ = training_texts(task_samples=0)
    assert set(texts) == set(load_corpus().train)


def test_task_texts_join_the_training_text():
    texts, counts = training_texts(task_samples=1)
    assert counts["task_texts"] > 0 and len(texts) == counts["corpus_documents"] + counts["task_texts"]


def test_shipped_readme_names_the_shipped_file():
    readme = (SHIPPED_TOKENIZER.parent / "README.md").read_text(encoding="utf-8")
    assert file_sha256(SHIPPED_TOKENIZER) in readme, "data_samples/tokenizer/README.md has a stale sha256"


def test_missing_task_package_is_loud_but_not_fatal(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'dsvl_lab.data.tasks'")

    monkeypatch.setattr("dsvl_lab.data.tokenizer.task_texts", broken)
    texts, counts = training_texts()
    assert counts["task_texts"] == 0 and len(texts) == counts["corpus_documents"] > 0
    assert "WARNING" in capsys.readouterr().err
