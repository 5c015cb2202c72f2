"""A shared on-disk cache of rendered task samples: draw each picture once, read it back many times.

Why. A sample is a pure function of (family, detail, image size, seed) (``tasks.generate_sample``),
and a study draws the same ones again and again: the arms of one seed read exactly the same
training images (``mixing.draw_seed`` depends on the run's seed, the step and the slot only), and
every evaluation of a seed asks the same held-out questions. Rendering costs about 1-40 ms a
sample (charts are the slowest: matplotlib); reading one back from this cache about 0.3-1 ms. So a
sweep renders each sample once, into a folder every run reads from.

The cache never changes what a run sees: an entry holds the exact pixels, caption, questions and
metadata that ``generate_sample`` returns (the tests compare them for every family), and anything
wrong with an entry (missing, truncated, damaged, another key's) means "not in the cache": the
sample is rendered again and the entry replaced. The worst a broken cache can do is cost time.

The format: one file a sample, ``<root>/v<FORMAT>-<fingerprint>/<family>-<detail>-<size>/<xx>/<seed>.sample``
(``xx``: the seed's last byte in hex, so no folder holds more than a few hundred files per run)::

    b"DSVL-SAMPLE\\n"          magic, 12 bytes
    4 bytes, little-endian    length of the header
    header                    JSON: the key, caption, qa turns and metadata (tuples tagged, so they come back as tuples)
    the rest                  the RGB pixels, zlib level 1 (zlib's own checksum catches damage)

Measured on the 2-core VM at 256 px (benchmarks/README.md): zlib level 1 reads almost as fast as an
uncompressed ``.npy`` (0.2-0.55 ms against 0.2 ms) at a tenth to a hundredth of the size (2-60 KB
instead of 196 KB); a PNG (lossless too) takes about twice as long to decode, an ``.npz`` pays the
zip archive's overhead (0.45-0.5 ms).

Invalidation: the fingerprint hashes the generators' source (``dsvl_lab/data/tasks/*.py``), the
versions of Pillow, matplotlib and numpy (they draw the pixels) and ``FORMAT``; change any of them
and the cache starts a fresh folder beside the old one (``clear`` removes everything).

Concurrency: entries are written atomically (``atomic.atomic_write``: a temporary file, then
``os.replace``), so several runs may render and write the same key at once: each write succeeds,
the last one wins with the same bytes, and a reader sees a whole file or none. No locks.

One pair is left out: scene/coarse renders faster (0.1-0.2 ms) than an entry reads back (``RENDER_ALWAYS``).

Where it is used: ``cached_sample`` is what the training draws (``stage_data.task_sample``) and the
evaluation sets (``metrics.vl_eval.eval_set``) call. It reads the cache named by the environment
variable ``DSVL_LAB_SAMPLE_CACHE`` (a folder; unset, empty or ``off``: no cache, render every
time). ``dsvl-lab sweep`` sets it for its runs (``<out>/sample-cache``) and ``dsvl-lab pipeline``
for its stages (``sample-cache`` beside the pipeline's folder, e.g. ``runs/sample-cache`` for
``make demo``), each through ``resolve_root`` and ``named_in_env``; ``build`` pre-renders a list
of keys in worker processes with a progress bar (``dsvl-lab data cache``).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import warnings
import zlib
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable, NamedTuple

from PIL import Image

from ..atomic import atomic_write
from .tasks import QA, Sample, generate_sample

FORMAT = 1
ENV = "DSVL_LAB_SAMPLE_CACHE"
OFF_VALUES = ("", "0", "off", "none", "no", "false")
CACHE_FOLDER = "sample-cache"  # the default folder's name, beside a sweep's studies or a pipeline's folder
AUTO = "auto"
MAGIC = b"DSVL-SAMPLE\n"
SUFFIX = ".sample"
TASKS_DIR = Path(__file__).resolve().parent / "tasks"
DRAWING_PACKAGES = ("pillow", "matplotlib", "numpy")
# What renders faster than it reads back: a few flat shapes on white, 0.1-0.2 ms, against 0.2-0.4 ms
# for reading an entry (benchmarks/README.md). ``cached_sample`` and ``build`` leave these out.
RENDER_ALWAYS = {("scene", "coarse")}


class SampleKey(NamedTuple):
    """What a sample is a pure function of (``generate_sample``'s arguments)."""

    family: str
    detail: str
    image_size: int
    seed: int


@lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """12 hex digits naming the generators' code and the drawing libraries' versions (see the module docstring)."""
    digest = hashlib.sha256(f"dsvl-sample-cache format {FORMAT}\n".encode())
    for path in sorted(TASKS_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\n" + path.read_bytes())
    for package in DRAWING_PACKAGES:
        try:
            digest.update(f"{package} {version(package)}\n".encode())
        except PackageNotFoundError:
            digest.update(f"{package} ?\n".encode())
    return digest.hexdigest()[:12]


# ============================================================================ the file format
def _tagged(value):
    """JSON keeps lists but not tuples: tag tuples so that the metadata comes back equal."""
    if isinstance(value, tuple):
        return {"__tuple__": [_tagged(v) for v in value]}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    if isinstance(value, dict):
        return {k: _tagged(v) for k, v in value.items()}
    return value


def _untagged(value):
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_untagged(v) for v in value["__tuple__"])
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


def encode(sample: Sample) -> bytes:
    """One sample as the bytes of its cache file."""
    header = json.dumps({"key": list(key_of(sample)), "caption": sample.caption,
                         "qa": [vars(qa) for qa in sample.qa], "meta": _tagged(sample.meta)}).encode()
    pixels = zlib.compress(sample.image.tobytes(), 1)  # level 1: most of the size win, the fastest to write
    return MAGIC + struct.pack("<I", len(header)) + header + pixels


def decode(data: bytes, key: SampleKey) -> Sample:
    """The sample in ``data``; raises (ValueError, zlib.error, ...) if it is not a whole entry of ``key``."""
    if not data.startswith(MAGIC):
        raise ValueError("not a sample cache entry")
    start = len(MAGIC) + 4
    (length,) = struct.unpack("<I", data[len(MAGIC):start])
    header = json.loads(data[start:start + length])
    if SampleKey(*header["key"]) != key:
        raise ValueError(f"entry of {header['key']}, not {list(key)}")
    pixels = zlib.decompress(data[start + length:])
    if len(pixels) != 3 * key.image_size ** 2:
        raise ValueError("wrong number of pixels")
    image = Image.frombytes("RGB", (key.image_size, key.image_size), pixels)
    return Sample(family=key.family, detail=key.detail, image=image, caption=header["caption"],
                  qa=[QA(**qa) for qa in header["qa"]], seed=key.seed, meta=_untagged(header["meta"]))


def key_of(sample: Sample) -> SampleKey:
    return SampleKey(sample.family, sample.detail, sample.image.size[0], int(sample.seed))


def fits_the_format(sample: Sample) -> bool:
    """True when the metadata survives JSON unchanged (it does for every family today; a future
    field that did not, an int dict key or a NaN, say, is simply never cached)."""
    return _untagged(json.loads(json.dumps(_tagged(sample.meta)))) == sample.meta


# ============================================================================ the cache
class SampleCache:
    """The entries under ``root`` for the current generators; ``get`` reads one or renders and stores it.

    ``hits``, ``misses`` (rendered: not there yet) and ``repaired`` (rendered: the entry was damaged)
    count this process's lookups.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.folder = self.root / f"v{FORMAT}-{generator_fingerprint()}"
        self.hits = self.misses = self.repaired = 0
        self._write_failed = False

    def path(self, key: SampleKey) -> Path:
        group = f"{key.family}-{key.detail}-{key.image_size}"
        return self.folder / group / f"{key.seed % 256:02x}" / f"{key.seed}{SUFFIX}"

    def __contains__(self, key: SampleKey) -> bool:
        return self.path(key).is_file()

    def read(self, key: SampleKey) -> Sample | None:
        """The cached sample, or None when there is no whole, valid entry for ``key``."""
        try:
            data = self.path(key).read_bytes()
        except OSError:  # not there (or unreadable): a miss
            return None
        try:
            return decode(data, key)
        except Exception:  # broad on purpose: whatever is wrong with an entry, it is re-rendered, never fatal
            self.repaired += 1
            return None

    def write(self, sample: Sample) -> None:
        """Store ``sample`` atomically; a cache that cannot be written (full disk, read-only) only warns, once."""
        if not fits_the_format(sample):
            return
        try:
            data = encode(sample)
            atomic_write(self.path(key_of(sample)), lambda tmp: Path(tmp).write_bytes(data))
        except OSError as error:
            if not self._write_failed:
                warnings.warn(f"sample cache {self.root}: cannot write ({error}); samples are rendered instead",
                              RuntimeWarning, stacklevel=3)
            self._write_failed = True

    def get(self, key: SampleKey) -> Sample:
        """The sample of ``key``: from the cache, else rendered (and stored)."""
        sample = self.read(key)
        if sample is not None:
            self.hits += 1
            return sample
        self.misses += 1
        sample = generate_sample(key.family, key.seed, detail=key.detail, image_size=key.image_size)
        self.write(sample)
        return sample


@lru_cache(maxsize=8)
def open_cache(root: str) -> SampleCache:
    """One ``SampleCache`` per folder and process (its fingerprint and counters are shared)."""
    return SampleCache(root)


def cache_from_env() -> SampleCache | None:
    """The cache named by ``DSVL_LAB_SAMPLE_CACHE``, or None when it is unset, empty or ``off``."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF_VALUES:
        return None
    return open_cache(value)  # memoised by the variable's text: no path resolution per sample


def resolve_root(choice: str | os.PathLike | None, default: str | os.PathLike) -> Path | None:
    """Where a sweep or a pipeline keeps its samples; None for no cache.

    ``choice``: ``"auto"`` (``DSVL_LAB_SAMPLE_CACHE`` when set, else ``default``), a folder, or
    None / ``"off"``.
    """
    if choice == AUTO:
        choice = os.environ.get(ENV) or default
    if choice is None or str(choice).strip().lower() in OFF_VALUES:
        return None
    return Path(choice).resolve()


@contextmanager
def named_in_env(root: Path | None):
    """``DSVL_LAB_SAMPLE_CACHE`` names ``root`` (or ``off``) meanwhile: what this process draws, and the
    processes it starts (loader workers, a sweep's runs), read that cache."""
    before = os.environ.get(ENV)
    os.environ[ENV] = str(root) if root is not None else "off"
    try:
        yield root
    finally:
        if before is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = before


def cached_sample(family: str, seed: int, detail: str = "coarse", image_size: int = 256,
                  cache: SampleCache | None = None) -> Sample:
    """``generate_sample(family, seed, detail, image_size)`` through ``cache`` (default: the environment's)."""
    if cache is None:
        cache = cache_from_env()
    if cache is None or (family, detail) in RENDER_ALWAYS:
        return generate_sample(family, seed, detail=detail, image_size=image_size)
    return cache.get(SampleKey(family, detail, int(image_size), int(seed)))


# ============================================================================ build, verify, clear
def _render_into(job: tuple[str, SampleKey]) -> bool:
    """Worker of ``build``: make sure one entry exists; True when it had to be rendered."""
    root, key = job
    cache = open_cache(root)
    if cache.read(key) is not None:  # another run may have written it meanwhile
        return False
    cache.write(generate_sample(key.family, key.seed, detail=key.detail, image_size=key.image_size))
    return True


def build(cache: SampleCache, keys: Iterable[SampleKey], workers: int = 1, progress: bool = True,
          in_process_below: int = 64) -> dict[str, int]:
    """Render every key not in ``cache`` yet, in ``workers`` processes, with a tqdm progress bar.

    Returns ``{"samples": distinct keys, "present": already cached, "rendered": rendered now}``, not
    counting the keys of ``RENDER_ALWAYS``.
    Fewer than ``in_process_below`` missing keys are rendered in this process (starting workers
    would cost more). Keys are shuffled so that the slow charts spread over the workers.
    """
    from tqdm.auto import tqdm

    keys = sorted(key for key in set(keys) if (key.family, key.detail) not in RENDER_ALWAYS)
    missing = [key for key in keys if key not in cache]
    random.Random(0).shuffle(missing)
    jobs = [(str(cache.root), key) for key in missing]
    bar = tqdm(total=len(jobs), desc="rendering samples", unit="sample", disable=not progress or not jobs)
    if workers <= 1 or len(jobs) < in_process_below:
        for job in jobs:
            _render_into(job)
            bar.update()
    else:
        import multiprocessing

        # spawn: fresh processes, whatever the caller has imported or started (torch, threads)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_into, jobs, chunksize=8):
                bar.update()
    bar.close()
    return {"samples": len(keys), "present": len(keys) - len(missing), "rendered": len(missing)}


def entries(cache: SampleCache) -> list[Path]:
    """Every entry file of the current generators' folder."""
    return sorted(cache.folder.glob(f"*/*/*{SUFFIX}")) if cache.folder.is_dir() else []


def key_of_path(path: Path) -> SampleKey:
    family, detail, size = path.parent.parent.name.split("-")
    return SampleKey(family, detail, int(size), int(path.name.removesuffix(SUFFIX)))


def verify(cache: SampleCache, n: int = 50, seed: int = 0) -> dict:
    """Render ``n`` random entries afresh and compare them with the cache, pixels and text.

    Returns ``{"checked": k, "mismatched": [paths]}``; a damaged entry counts as a mismatch.
    """
    files = entries(cache)
    chosen = random.Random(seed).sample(files, min(n, len(files)))
    mismatched = []
    for path in chosen:
        key = key_of_path(path)
        stored = cache.read(key)
        if stored != generate_sample(key.family, key.seed, detail=key.detail, image_size=key.image_size):
            mismatched.append(str(path))
    return {"checked": len(chosen), "mismatched": mismatched}


def folder_size(root: str | os.PathLike) -> tuple[int, int]:
    """(entries, bytes) under ``root``, every generator version included."""
    files = list(Path(root).glob(f"*/*/*/*{SUFFIX}"))
    return len(files), sum(f.stat().st_size for f in files)


def clear(root: str | os.PathLike) -> None:
    """Remove the cache folder ``root`` (all versions). Safe between runs; a running run just renders again."""
    shutil.rmtree(root, ignore_errors=True)
    open_cache.cache_clear()
