"""Sample files on disk: round trip, every kind of bad line, skip-and-count, the preview."""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from dsvl_lab.cli import main
from dsvl_lab.data import jsonl
from dsvl_lab.data.jsonl import DataError, check_jsonl, contact_sheet, iter_jsonl, read_jsonl, write_jsonl
from dsvl_lab.data.tasks import generate_samples
from dsvl_lab.errors import InputError


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


@pytest.mark.parametrize("mutation,key,message", [
    (lambda r: {**r, "image": "images/nope.png"}, "image", "missing image"),
    (lambda r: {k: v for k, v in r.items() if k != "image"}, "image", "missing field"),
    (lambda r: {"image": r["image"]}, "qa, conversation or caption", "missing field"),
    (lambda r: {**r, "qa": [{"question": "q"}]}, r"qa\[0\].answer", "missing field"),
    (lambda r: {**r, "conversation": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     r"conversation\[1\].role", "roles do not alternate"),
])
def test_bad_lines_name_file_line_and_problem(tmp_path, sample_file, mutation, key, message):
    line = json.dumps(mutation(good_record(sample_file))).encode()
    path = bad_file(tmp_path, sample_file, line)
    with pytest.raises(DataError, match=rf"bad.jsonl:2: {key}: {message}"):
        read_jsonl(path)
    skipped = read_jsonl(path, on_bad_sample="skip")
    assert len(skipped) == 2 and sum(skipped.skipped.values()) == 1


def test_not_utf8_and_unreadable_image(tmp_path, sample_file):
    path = bad_file(tmp_path, sample_file, '{"image": "x", "caption": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(DataError, match="bad.jsonl:2: line: not UTF-8"):
        read_jsonl(path)
    broken = path.parent / "images" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    path = bad_file(tmp_path, sample_file, json.dumps({"image": "images/broken.png", "caption": "x"}).encode())
    with pytest.raises(DataError, match="bad.jsonl:2: image: unreadable image"):
        read_jsonl(path)


def test_preview_and_cli(tmp_path, sample_file, capsys):
    _, samples = sample_file
    assert contact_sheet(samples, tmp_path / "sheet.png").stat().st_size > 1000
    assert main(["data", "preview", "--family", "ocr", "--n", "2", "--image-size", "64",
                 "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists()
    assert main(["data", "check", str(sample_file[0])]) == 0
    assert "3 good sample(s)" in capsys.readouterr().out


# ============================================================================ types, file:line and key
def test_pixel_limit_default_is_the_processors():
    from dsvl_lab.config import DSVLConfig
    from dsvl_lab.processor import DEFAULT_MAX_IMAGE_PIXELS

    assert jsonl.DEFAULT_MAX_IMAGE_PIXELS == DEFAULT_MAX_IMAGE_PIXELS
    assert jsonl.DEFAULT_MAX_IMAGE_PIXELS == DSVLConfig.__dataclass_fields__["max_image_pixels"].default


def first_qa(record: dict, **changes) -> dict:
    return {**record, "qa": [{**record["qa"][0], **changes}]}


# (what the bad line is, the key the error must name, the reason it is counted under with skip)
TYPE_ERRORS = [
    (lambda r: {**r, "image": 5}, "image", "wrong type"),
    (lambda r: {**r, "image": ["images/a.png"]}, "image", "wrong type"),
    (lambda r: {**r, "caption": ["a"]}, "caption", "wrong type"),
    (lambda r: {**r, "id": 3}, "id", "wrong type"),
    (lambda r: {**r, "family": None}, "family", "wrong type"),
    (lambda r: {**r, "seed": "0"}, "seed", "wrong type"),
    (lambda r: {**r, "seed": True}, "seed", "wrong type"),
    (lambda r: {**r, "seed": 1.5}, "seed", "wrong type"),
    (lambda r: {**r, "qa": {"question": "q", "answer": "a"}}, "qa", "wrong type"),
    (lambda r: {**r, "qa": ["What colour?"]}, "qa[0]", "wrong type"),
    (lambda r: first_qa(r, question=7), "qa[0].question", "wrong type"),
    (lambda r: first_qa(r, answer=["a"]), "qa[0].answer", "wrong type"),
    (lambda r: first_qa(r, options="a,b"), "qa[0].options", "wrong type"),
    (lambda r: first_qa(r, options=[r["qa"][0]["answer"], 2]), "qa[0].options[1]", "wrong type"),
    (lambda r: first_qa(r, options=["not it"]), "qa[0].options", "answer not in options"),
    (lambda r: first_qa(r, kind=1), "qa[0].kind", "wrong type"),
    (lambda r: {**r, "conversation": "hi"}, "conversation", "wrong type"),
    (lambda r: {**r, "conversation": []}, "conversation", "bad conversation"),
    (lambda r: {**r, "conversation": [{"role": "user", "content": 3}]}, "conversation[0].content", "wrong type"),
    (lambda r: {**r, "conversation": [{"role": None, "content": "a"}]}, "conversation[0].role", "wrong type"),
    (lambda r: {**r, "conversation": [{"role": "user", "content": "a", "images": ["/etc/passwd"]}]},
     "conversation[0].images", "bad conversation"),
    (lambda r: {**r, "conversation": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
     "conversation[1].role", "roles do not alternate"),
    (lambda r: {**r, "caption": "\ud800"}, "caption", "bad text"),
]

# Lines json.loads would accept, or crash on, written as raw text.
RAW_ERRORS = [
    (b'{"image": "images/a.png", "image": "images/b.png", "caption": "x"}', "image", "duplicate key"),
    (b'{"image": "images/a.png", "caption": "x", "seed": NaN}', "line", "not a number"),
    (b'{"image": "images/a.png", "caption": "x", "seed": -Infinity}', "line", "not a number"),
    (b'{"image": "images/a.png", "caption": "x", "w": 1e999}', "line", "not a number"),
    (b'{"image": "images/a.png", "caption": "x", "seed": ' + b"9" * 5000 + b"}", "line", "number too long"),
    (b'{"image": "images/a.png", "caption": "x", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "line",
     "nested too deeply"),
    (b'{"image": "images/a.png", "caption": "x", "x": ' + b"[" * 40 + b"]" * 40 + b"}", "line",
     "nested too deeply"),
    (b'["image", "caption"]', "line", "not an object"),
    (b'"just a string"', "line", "not an object"),
    (b'{"image": "images/a.png", "caption": "x"', "line", "not valid JSON"),
    (b'{"image": "images/a.png", "caption": "caf\xe9"}', "line", "not UTF-8"),
]


def assert_bad_line(path, key: str, reason: str):
    """Raise names file:line and key; skip reads the two good lines and counts the bad one by reason."""
    with pytest.raises(DataError) as raised:
        read_jsonl(path)
    assert raised.value.source == f"{path}:2" and raised.value.key == key and raised.value.reason == reason
    assert str(raised.value).startswith(f"{path}:2: {key}: ")
    with pytest.raises(DataError) as checked:
        check_jsonl(path)
    assert (checked.value.source, checked.value.key) == (f"{path}:2", key)
    skipped = read_jsonl(path, on_bad_sample="skip")
    assert len(skipped) == 2 and skipped.skipped == {reason: 1}
    assert skipped.problems[0].startswith(f"{path}:2: {key}: ")
    report = check_jsonl(path, on_bad_sample="skip")
    assert report.good == 2 and report.skipped == {reason: 1}


@pytest.mark.parametrize("mutation,key,reason", TYPE_ERRORS)
def test_type_errors_name_file_line_and_key_under_raise_and_skip(tmp_path, sample_file, mutation, key, reason):
    line = json.dumps(mutation(good_record(sample_file))).encode()
    assert_bad_line(bad_file(tmp_path, sample_file, line), key, reason)


@pytest.mark.parametrize("line,key,reason", RAW_ERRORS)
def test_bad_json_is_refused_cleanly(tmp_path, sample_file, line, key, reason):
    assert_bad_line(bad_file(tmp_path, sample_file, line), key, reason)


def test_skip_never_aborts_and_counts_reasons(tmp_path, sample_file, capsys):
    record = good_record(sample_file)
    bad = ([json.dumps(mutation(record)).encode() for mutation, _, _ in TYPE_ERRORS]
           + [line for line, _, _ in RAW_ERRORS])
    lines = sample_file[0].read_bytes().splitlines()
    target = sample_file[0].parent / "many.jsonl"
    target.write_bytes(b"\n".join(bad + lines + bad) + b"\n")
    expected = {}
    for reason in [r for *_, r in TYPE_ERRORS] + [r for *_, r in RAW_ERRORS]:
        expected[reason] = expected.get(reason, 0) + 2
    report = check_jsonl(target, on_bad_sample="skip")
    assert report.good == len(lines) and report.skipped == expected
    assert len(report.problems) == jsonl.MAX_PROBLEMS_KEPT  # bounded, whatever the file's length
    assert len(read_jsonl(target, on_bad_sample="skip")) == len(lines)
    assert sum(1 for _ in iter_jsonl(target, on_bad_sample="skip")) == len(lines)
    capsys.readouterr()
    assert main(["data", "check", str(target), "--on-bad-sample", "skip"]) == 0
    out = capsys.readouterr().out
    assert f"{len(lines)} good sample(s), {sum(expected.values())} skipped" in out
    assert f"skipped {target}:1: image: wrong type" in out
    assert main(["data", "check", str(target)]) == 2
    assert f"{target}:1: image: wrong type" in capsys.readouterr().err


def test_a_line_too_long_is_refused_without_reading_it_whole(sample_file, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 64)
    target = sample_file[0].parent / "long.jsonl"
    short = json.dumps({"image": good_record(sample_file)["image"], "caption": "x"})
    target.write_text("\n".join([short, "x" * 1000, short]) + "\n")
    report = check_jsonl(target, on_bad_sample="skip")
    assert report.good == 2 and report.skipped == {"line too long": 1}
    with pytest.raises(DataError, match=r"long.jsonl:2: line: line too long"):
        check_jsonl(target)


# ============================================================================ path confinement
@pytest.fixture
def confined(tmp_path):
    """tmp/outside.png, tmp/data/images/in.png, and a symlink tmp/data/link.png -> ../outside.png."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(tmp_path / "outside.png")
    Image.new("RGB", (8, 8), "blue").save(data / "images" / "in.png")
    (data / "link.png").symlink_to(tmp_path / "outside.png")

    def file_with(image: str) -> Path:
        path = data / "samples.jsonl"
        path.write_text(json.dumps({"image": "images/in.png", "caption": "in"}) + "\n"
                        + json.dumps({"image": image, "caption": "x"}) + "\n")
        return path

    return tmp_path, file_with


@pytest.mark.parametrize("image", ["ABSOLUTE", "../outside.png", "images/../../outside.png", "link.png"])
def test_image_paths_outside_the_folder_are_refused_unless_allowed(confined, image, capsys):
    root, file_with = confined
    path = file_with(str(root / "outside.png") if image == "ABSOLUTE" else image)
    with pytest.raises(DataError) as raised:
        check_jsonl(path)
    assert (raised.value.source, raised.value.key, raised.value.reason) == (f"{path}:2", "image",
                                                                            "outside the sample folder")
    assert "--allow-outside-paths" in str(raised.value) and "allow_outside_paths=True" in str(raised.value)
    assert read_jsonl(path, on_bad_sample="skip").skipped == {"outside the sample folder": 1}
    assert main(["data", "check", str(path)]) == 2
    assert "samples.jsonl:2: image: outside the sample folder" in capsys.readouterr().err
    # The opt-in: the same file reads, and the image is the one outside.
    read = read_jsonl(path, allow_outside_paths=True)
    assert read.samples[1].image.getpixel((0, 0)) == (255, 0, 0)
    assert main(["data", "check", str(path), "--allow-outside-paths"]) == 0
    assert "2 good sample(s), 0 skipped" in capsys.readouterr().out


def test_paths_that_stay_inside_are_fine(confined):
    root, file_with = confined
    (root / "data" / "images" / "inner.png").symlink_to(root / "data" / "images" / "in.png")
    for image in ["images/./in.png", "images/../images/in.png", "images/inner.png"]:
        assert check_jsonl(file_with(image)).good == 2
    with pytest.raises(DataError, match=r"samples.jsonl:2: image: bad path"):
        check_jsonl(file_with("images/in\x00.png"))


# ============================================================================ the pixel limit
def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height: a decompression-bomb stand-in, a few bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixels = zlib.compress(b"\0" * 64)  # far too few: never decoded by a check
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_pixel_limit_applies_to_sample_images_from_the_header(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 100)).save(tmp_path / "images" / "small.png")
    png_claiming(tmp_path / "images" / "big.png", 9000, 9000)     # 81 M pixels: over 64 M, under PIL's limit
    png_claiming(tmp_path / "images" / "bomb.png", 20000, 20000)  # 400 M: over PIL's own limit too
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"image": f"images/{name}.png", "caption": name}) + "\n"
                            for name in ["small", "big", "bomb"]))
    report = check_jsonl(path, on_bad_sample="skip")
    assert report.good == 1 and report.skipped == {"image too large": 2}
    assert "samples.jsonl:2: image: image too large" in report.problems[0]
    assert "64,000,000" in report.problems[0] and "max_image_pixels" in report.problems[0]
    with pytest.raises(DataError, match="samples.jsonl:1: image: image too large"):
        check_jsonl(path, max_image_pixels=5000)
    # A raised limit lets the header pass; the check never decodes, so the fake pixels go unnoticed...
    assert main(["data", "check", str(path), "--on-bad-sample", "skip", "--max-image-pixels", "100000000"]) == 0
    assert "2 good sample(s), 1 skipped" in capsys.readouterr().out
    # ...while reading decodes with the processor's loader, which finds them truncated.
    read = read_jsonl(path, on_bad_sample="skip", max_image_pixels=100_000_000)
    assert len(read) == 1 and read.skipped == {"unreadable image": 1, "image too large": 1}


# ============================================================================ streaming memory
# Peak RSS from /proc: getrusage's ru_maxrss is no use here, as a child started by fork + exec
# reports the parent's peak (pytest's, with the 4000 x 4000 image it drew). PIL decodes into C
# memory that tracemalloc does not see, so RSS is the number that matters; tracemalloc's peak
# covers the Python objects (lines, records, counters).
MEMORY_PROBE = """
import json, re, sys, tracemalloc
from dsvl_lab.cli import main

def status(name):
    with open("/proc/self/status") as f:
        return int(re.search(name + r":\\s+(\\d+) kB", f.read()).group(1)) * 1024

main(["data", "check", sys.argv[1]])  # warm up: imports, PIL's PNG plugin
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
except OSError:
    pass  # then the peak may include the imports: growth is still measured from the current RSS
before = status("VmRSS")
tracemalloc.start()
main(["data", "check", sys.argv[2]])
traced = tracemalloc.get_traced_memory()[1]
print(json.dumps({"rss_growth": max(0, status("VmHWM") - before), "traced_peak": traced}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_data_check_memory_does_not_grow_with_the_number_of_lines(tmp_path):
    """50 lines of 4000 x 4000 images: decoded, each would take 48 MB; checked, they take nothing."""
    (tmp_path / "images").mkdir()
    big = tmp_path / "images" / "big-0.png"
    Image.linear_gradient("L").resize((4000, 4000)).convert("RGB").save(big, compress_level=1)
    for index in range(1, 50):  # separate names, one file's worth of disk
        os.link(big, tmp_path / "images" / f"big-{index}.png")

    def sample_file(count: int) -> Path:
        path = tmp_path / f"{count}.jsonl"
        path.write_text("".join(json.dumps({"image": f"images/big-{i}.png", "caption": "a gradient", "seed": i})
                                + "\n" for i in range(count)))
        return path

    warm = sample_file(1)
    measured = {}
    for count in (5, 50):
        probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(warm), str(sample_file(count))],
                               capture_output=True, text=True, check=True, timeout=120,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
        measured[count] = json.loads(probe.stdout.strip().splitlines()[-1])
        assert f"{count} good sample(s), 0 skipped" in probe.stdout
    print(f"data check memory, 5 vs 50 lines of 4000x4000 PNGs: {measured}")
    one_image = 4000 * 4000 * 3
    assert measured[50]["rss_growth"] < one_image / 2, measured      # not one image decoded, let alone 50
    assert measured[50]["rss_growth"] - measured[5]["rss_growth"] < 8 * 2**20, measured
    assert measured[50]["traced_peak"] - measured[5]["traced_peak"] < 2**20, measured


# ============================================================================ fuzz
FUZZ_VALUES = [None, True, False, 0, -1, 1.5, "", "x", "\u00e9", [], [1], ["a", 2], {}, {"a": 1}, [[[[["deep"]]]]],
               10**30, "../outside.png", "/etc/passwd", "images", "a" * 5000, "images/\u0000.png"]
FUZZ_RAW_VALUES = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000, b'"\\ud800"', b'"\\udfff x"',
                   b"[" * 3000 + b"]" * 3000, b"[" * 30 + b"]" * 30, b"{" * 5, b'"\xff\xfe"', b'"\xc0\xaf"']


def fuzz_targets(record: dict) -> list[dict]:
    """The objects of a (possibly already mutated) record whose fields a mutation may change."""
    qa = record.get("qa")
    return [record] + ([item for item in qa if isinstance(item, dict)] if isinstance(qa, list) else [])


def fuzz_line(rng: random.Random, record: dict, line: bytes) -> bytes:
    """One random mutation (sometimes two) of a valid sample line; never contains a newline."""
    for _ in range(rng.choice([1, 1, 1, 2])):
        kind = rng.randrange(8)
        if kind == 0:  # drop a field, top-level or in a qa item
            target = rng.choice(fuzz_targets(record))
            if target:
                target.pop(rng.choice(list(target)))
            line = json.dumps(record).encode()
        elif kind == 1:  # retype a field
            target = rng.choice(fuzz_targets(record))
            target[rng.choice(list(target) or ["image"])] = rng.choice(FUZZ_VALUES)
            line = json.dumps(record).encode()
        elif kind == 2:  # duplicate a field, or insert a raw value json.dumps would never write
            name = rng.choice([b"image", b"caption", b"seed", b"qa", b"options", b"x"])
            value = rng.choice(FUZZ_RAW_VALUES + [b'"images/a.png"', b"3"])
            line = b"{" + b'"' + name + b'": ' + value + b", " + line.lstrip()[1:]
        elif kind == 3:  # truncate
            line = line[:rng.randrange(len(line) + 1)]
        elif kind == 4:  # insert garbage bytes
            at = rng.randrange(len(line) + 1)
            line = line[:at] + rng.randbytes(rng.randint(1, 8)) + line[at:]
        elif kind == 5:  # flip a byte (wrong unicode, broken syntax, a changed letter)
            at = rng.randrange(max(1, len(line)))
            line = line[:at] + bytes([rng.randrange(256)]) + line[at + 1:]
        elif kind == 6:  # deep nesting, as the whole line or as a value
            depth = rng.choice([17, 50, 1500, 50_000])
            nested = b"[" * depth + b"]" * depth
            line = (nested if rng.random() < 0.3
                    else line.replace(b'"caption": ', b'"caption": ' + nested + b", \"c\": ", 1))
        else:  # wrong unicode: lone surrogates, invalid UTF-8 sequences
            line = line.replace(b'"caption": "', b'"caption": "' + rng.choice([b"\\ud800", b"\xed\xa0\x80", b"\xff",
                                                                               b"\xc3"]), 1)
    return line.replace(b"\n", b" ").replace(b"\r", b" ")


def test_fuzzed_lines_only_ever_raise_the_projects_error_with_file_line_and_key(sample_file):
    path, _ = sample_file
    good = path.read_bytes().splitlines()
    json.loads(good[0])  # the first line is valid JSON
    target = path.parent / "fuzz.jsonl"
    rng = random.Random(1234)
    deadline, runs, reasons = time.monotonic() + 2.5, 0, {}
    while time.monotonic() < deadline and runs < 5000:
        line = fuzz_line(rng, json.loads(good[0]), good[0])
        content = b"\n".join([good[1], line, good[2]]) + b"\n"
        target.write_bytes(content)
        lines = sum(1 for raw in content.split(b"\n") if raw.strip())  # a blank line is no sample, good or bad
        runs += 1
        try:
            try:
                check_jsonl(target)
                read_jsonl(target)  # also decodes: the processor's loader must not leak its own errors
            except InputError as error:
                assert error.source == f"{target}:2", (line, error)
                assert isinstance(error.key, str) and error.key, (line, error)
                reasons[error.reason] = reasons.get(error.reason, 0) + 1
            report = check_jsonl(target, on_bad_sample="skip")  # skip must never abort
            assert report.good + sum(report.skipped.values()) == lines, (line, report.skipped)
        except AssertionError:
            raise
        except Exception as error:  # anything else is a bug: show the line that caused it
            pytest.fail(f"{type(error).__name__}: {error} from line {line[:300]!r}")
    assert runs >= 50, runs
    assert len(reasons) >= 6, reasons  # the mutations reach many different checks
    print(f"fuzz: {runs} lines, failures by reason: {reasons}")
