"""The shared sample cache: cached samples equal fresh ones, concurrent writers and damaged entries are
harmless, and batches and evaluation sets are the same tensors with and without it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dsvl_lab.ablations.runner import cache_for_runs, sweep_cache_root
from dsvl_lab.cli import main
from dsvl_lab.data import sample_cache
from dsvl_lab.data.datamodule import DSVLDataModule, stage_sample_keys
from dsvl_lab.data.sample_cache import (ENV, SampleCache, SampleKey, build, cached_sample, encode, resolve_root,
                                        verify)
from dsvl_lab.data.tasks import DETAILS, FAMILIES, generate_sample
from dsvl_lab.metrics import vl_eval
from dsvl_lab.metrics.vl_eval import eval_sample_keys, eval_set


@pytest.fixture
def cache(tmp_path) -> SampleCache:
    return SampleCache(tmp_path / "cache")


def assert_same_sample(got, expected) -> None:
    assert np.array_equal(np.asarray(got.image), np.asarray(expected.image))
    assert (got.image.mode, got.image.size) == (expected.image.mode, expected.image.size)
    assert (got.caption, got.qa, got.meta, got.seed) == (expected.caption, expected.qa, expected.meta, expected.seed)
    assert got == expected  # the dataclass as a whole, the PIL image included


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("detail", DETAILS)
def test_a_cached_sample_equals_a_fresh_rendering(cache, family, detail):
    for seed in (0, 7, 2**62 + 3):  # a training seed and an evaluation seed
        key = SampleKey(family, detail, 256, seed)
        fresh = generate_sample(family, seed, detail=detail, image_size=256)
        assert_same_sample(cache.get(key), fresh)  # rendered and stored
        reread = SampleCache(cache.root)  # a new process's view: nothing in memory
        assert_same_sample(reread.get(key), fresh)
        assert (reread.hits, reread.misses, reread.repaired) == (1, 0, 0)


def test_the_folder_names_format_and_generators(cache):
    path = cache.path(SampleKey("chart", "fine", 256, 258))
    assert path.relative_to(cache.root).parts == (
        f"v{sample_cache.FORMAT}-{sample_cache.generator_fingerprint()}", "chart-fine-256", "02", "258.sample")
    assert len(sample_cache.generator_fingerprint()) == 12


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped":  # one byte of the compressed pixels: zlib's checksum notices
        path.write_bytes(data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:])
    elif how == "another key":
        path.write_bytes(encode(generate_sample("doc", 99, detail="coarse", image_size=64)))
    else:
        path.write_bytes(b"not a sample at all")


@pytest.mark.parametrize("how", ["truncated", "empty", "flipped", "another key", "garbage"])
def test_a_damaged_entry_is_rendered_again_and_replaced(cache, how):
    key = SampleKey("ocr", "fine", 64, 5)
    fresh = generate_sample("ocr", 5, detail="fine", image_size=64)
    cache.get(key)
    damage(cache.path(key), how)
    assert_same_sample(cache.get(key), fresh)
    assert cache.repaired == 1
    again = SampleCache(cache.root)
    assert_same_sample(again.get(key), fresh)
    assert (again.hits, again.repaired) == (1, 0)  # the entry was replaced by a whole one


KEYS = [SampleKey(family, "fine", 64, seed) for family in ("scene", "doc", "screen") for seed in range(6)]


# A second process writing the same entries over and over (what two runs of one seed do); a plain
# `python -c` imports only the cache, so it starts in a fraction of a second.
WRITER = """
import sys
from dsvl_lab.data.sample_cache import SampleCache, SampleKey
from dsvl_lab.data.tasks import generate_sample
cache = SampleCache(sys.argv[1])
keys = [SampleKey(f, "fine", 64, s) for f in ("scene", "doc", "screen") for s in range(6)]
samples = [generate_sample(k.family, k.seed, detail=k.detail, image_size=k.image_size) for k in keys]
for _ in range(int(sys.argv[2])):
    for sample in samples:
        cache.write(sample)
"""


def test_concurrent_writers_leave_whole_entries_and_readers_never_see_half_a_file(cache):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(cache.root), "20"]) for _ in range(2)]
    reader = SampleCache(cache.root)
    deadline = time.monotonic() + 60
    while any(p.poll() is None for p in writers) and time.monotonic() < deadline:
        for key in KEYS:  # while both write: every entry read is whole (a miss is fine, damage is not)
            reader.read(key)
    assert [p.wait(timeout=60) for p in writers] == [0, 0]
    assert reader.repaired == 0
    for key in KEYS:
        assert_same_sample(reader.read(key), generate_sample(key.family, key.seed, key.detail, key.image_size))
    leftovers = [p for p in cache.folder.rglob("*") if p.is_file() and not p.name.endswith(".sample")]
    assert leftovers == []  # no temporary files left behind


def test_build_renders_the_missing_keys_in_worker_processes(cache):
    cache.get(KEYS[0])
    always = [SampleKey("scene", "coarse", 64, seed) for seed in range(3)]  # rendering is cheaper than reading
    stats = build(cache, KEYS + KEYS[:3] + always, workers=2, progress=False, in_process_below=0)
    assert stats == {"samples": len(KEYS), "present": 1, "rendered": len(KEYS) - 1}
    assert all(key in cache for key in KEYS) and not any(key in cache for key in always)
    assert build(cache, KEYS, workers=2, progress=False)["rendered"] == 0
    assert verify(cache, n=5) == {"checked": 5, "mismatched": []}


def test_verify_reports_an_entry_that_differs_from_a_fresh_rendering(cache):
    key = KEYS[0]
    wrong = generate_sample(key.family, key.seed, detail=key.detail, image_size=key.image_size)
    wrong.caption = "a caption the generator never wrote"  # what a changed generator would leave behind
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(encode(wrong))
    assert verify(cache, n=10)["mismatched"] == [str(cache.path(key))]


def test_the_environment_variable_turns_the_cache_on_and_off(tmp_path, monkeypatch):
    key = ("screen", 3, "coarse", 64)
    monkeypatch.setenv(ENV, "off")
    cached_sample(*key)
    assert not (tmp_path / "c").exists()
    monkeypatch.setenv(ENV, str(tmp_path / "c"))
    cached_sample(*key)
    assert SampleKey("screen", "coarse", 64, 3) in SampleCache(tmp_path / "c")
    assert sweep_cache_root(tmp_path / "out") == (tmp_path / "c").resolve()  # the variable wins
    monkeypatch.delenv(ENV)
    assert sweep_cache_root(tmp_path / "out") == (tmp_path / "out" / "sample-cache").resolve()
    assert sweep_cache_root(tmp_path / "out", "off") is None
    # a pipeline's default: "sample-cache" beside its folder (runs/sample-cache for runs/demo)
    assert resolve_root("auto", tmp_path / "sample-cache") == (tmp_path / "sample-cache").resolve()
    assert resolve_root(None, tmp_path / "sample-cache") is None
    with cache_for_runs(None):
        assert cached_sample(*key) == generate_sample("screen", 3, "coarse", 64)
        assert os.environ[ENV] == "off"
    assert ENV not in os.environ  # restored


def all_batches(dm: DSVLDataModule) -> list[dict]:
    return [dm.train_batches[step] for step in range(dm.total_steps)] + dm.validation_batches()


def datamodule(total_steps: int = 6) -> DSVLDataModule:
    dm = DSVLDataModule("dsvl-micro-hybrid", "stage2_joint", total_steps=total_steps, val_batches=1, batch_size=4,
                        language_ratio=0.3, warmup_steps=2, seq_len=128)
    dm.setup("fit")
    return dm


def test_batches_are_the_same_tensors_with_and_without_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    plain = all_batches(datamodule())
    dm = datamodule()
    keys = stage_sample_keys(dm.config, dm.data, dm.total_steps, val_batches=dm.val_batches)
    assert 0 < len(keys) <= 4 * dm.total_steps + 4
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    cache = sample_cache.cache_from_env()
    build(cache, keys, progress=False)  # pre-rendered from the keys alone, as a sweep does
    cached = all_batches(dm)
    cached_keys = {key for key in keys if (key.family, key.detail) not in sample_cache.RENDER_ALWAYS}
    assert cache.misses == 0 and cache.hits == len(cached_keys)  # the keys were exactly the draws
    assert len(plain) == len(cached)
    for one, other in zip(plain, cached):
        assert one.keys() == other.keys()
        for name, value in one.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == other[name].dtype and torch.equal(value, other[name]), name
            else:
                assert value == other[name], name


def test_evaluation_sets_read_the_cache_and_stay_the_same(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    plain = [eval_set(family, "fine", 3, 64, first=20_000) for family in FAMILIES]
    vl_eval._eval_samples.cache_clear()  # the process keeps evaluation sets in memory: read them afresh
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    cache = sample_cache.cache_from_env()
    build(cache, eval_sample_keys(FAMILIES, ["fine"], 3, 64, first=20_000), progress=False)
    assert [eval_set(family, "fine", 3, 64, first=20_000) for family in FAMILIES] == plain
    read = sum((family, "fine") not in sample_cache.RENDER_ALWAYS for family in FAMILIES) * 3
    assert cache.misses == 0 and cache.hits == read  # read from the cache, not from memory


def test_cli_prebuilds_verifies_and_clears_a_pipeline_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    root = tmp_path / "cache"
    assert main(["data", "cache", "--preset", "dsvl-micro-hybrid", "--smoke", "--cache", str(root),
                 "--workers", "1", "--verify", "5"]) == 0
    out = capsys.readouterr().out
    assert "verified 5 entries against fresh renderings: all equal" in out
    assert sample_cache.folder_size(root)[0] > 0
    assert main(["data", "cache", "--clear", "--cache", str(root)]) == 0
    assert not root.exists()
