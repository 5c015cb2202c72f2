"""Sample files on disk: round trip, every kind of bad line, skip-and-count, the preview."""
from __future__ import annotations

import json

import pytest

from dsvl_lab.cli import main
from dsvl_lab.data.jsonl import DataError, contact_sheet, read_jsonl, write_jsonl
from dsvl_lab.data.tasks import generate_samples


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    samples = generate_samples("scene", 3, detail="coarse", image_size=64)
    return write_jsonl(samples, folder / "samples.jsonl"), samples


def test_round_trip_keeps_text_and_pixels(sample_file):
    path, samples = sample_file
    read = read_jsonl(path)
    assert len(read) == 3
    for original, loaded in zip(samples, read.samples):
        assert loaded.caption == original.caption
        assert [q.answer for q in loaded.qa] == [q.answer for q in original.qa]
        assert loaded.image.tobytes() == original.image.tobytes()


def bad_file(tmp_path, sample_file, bad_line: bytes):
    path, _ = sample_file
    lines = path.read_bytes().splitlines()
    target = path.parent / "bad.jsonl"
    target.write_bytes(b"\n".join([lines[0], bad_line, lines[1]]) + b"\n")
    return target


def good_record(sample_file) -> dict:
    path, _ = sample_file
    return json.loads(path.read_text().splitlines()[0])


@pytest.mark.parametrize("mutation,message", [
    (lambda r: {**r, "image": "images/nope.png"}, "missing image"),
    (lambda r: {k: v for k, v in r.items() if k != "image"}, "missing field: image"),
    (lambda r: {"image": r["image"]}, "missing field: qa, conversation or caption"),
    (lambda r: {**r, "qa": [{"question": "q"}]}, "missing field"),
    (lambda r: {**r, "conversation": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     "roles do not alternate"),
])
def test_bad_lines_name_file_line_and_problem(tmp_path, sample_file, mutation, message):
    line = json.dumps(mutation(good_record(sample_file))).encode()
    path = bad_file(tmp_path, sample_file, line)
    with pytest.raises(DataError, match=rf"bad.jsonl:2: {message}"):
        read_jsonl(path)
    skipped = read_jsonl(path, on_bad_sample="skip")
    assert len(skipped) == 2 and sum(skipped.skipped.values()) == 1


def test_not_utf8_and_unreadable_image(tmp_path, sample_file):
    path = bad_file(tmp_path, sample_file, '{"image": "x", "caption": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(DataError, match="bad.jsonl:2: not UTF-8"):
        read_jsonl(path)
    broken = path.parent / "images" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    path = bad_file(tmp_path, sample_file, json.dumps({"image": "images/broken.png", "caption": "x"}).encode())
    with pytest.raises(DataError, match="bad.jsonl:2: unreadable image"):
        read_jsonl(path)


def test_preview_and_cli(tmp_path, sample_file, capsys):
    _, samples = sample_file
    assert contact_sheet(samples, tmp_path / "sheet.png").stat().st_size > 1000
    assert main(["data", "preview", "--family", "ocr", "--n", "2", "--image-size", "64",
                 "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists()
    assert main(["data", "check", str(sample_file[0])]) == 0
    assert "3 good sample(s)" in capsys.readouterr().out
