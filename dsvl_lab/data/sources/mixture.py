"""Which source a draw reads, and which row of it: pure functions of the run's seed and the draw.

The stage's ``ModalityPlan`` (``mixing.py``) already decides whether a draw is language-only or
multimodal, with the language share and the modality warm-up. This file adds the next two choices:

1. **Which source of that modality.** The ``n``-th sample of a modality goes to the source in
   whose slice of [0, 1) the point ``frac(offset + n * (sqrt(5) - 1) / 2)`` falls, each slice as
   wide as the source's share of the weights. The points of this golden-ratio (Weyl) sequence
   spread so evenly that after any ``N`` samples every source's count is within a few samples of
   ``N * share`` (a random choice would wander by ``sqrt(N)``), and it needs no state: ``n`` is
   computed from the step (``ModalityPlan.rank``), so a resumed run continues the same sequence.
2. **Which row of that source.** Uniform over the rows of the split (``train`` or ``eval``),
   drawn from the sample's own seed (``mixing.draw_seed``). A row is held out for evaluation when
   a hash of its row number falls below the source's ``eval_share``: training never reads it.
"""
from __future__ import annotations

import bisect
import math
import random
from pathlib import Path
from typing import Any

from ..jsonl.errors import DataError
from .records import row_modality
from .rows import check_exists, open_rows
from .spec import BUILT_IN_KINDS, SourceSpec

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
SPLITS = ("train", "eval")
MAX_TRIES = 100_000  # draws of a row number before a split is declared empty
MASK64 = (1 << 64) - 1


def mix64(value: int) -> int:
    """splitmix64's finaliser: a fast, well-spread 64-bit hash of an integer (the row number)."""
    value = (value + 0x9E3779B97F4A7C15) & MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK64
    return value ^ (value >> 31)


def is_held_out(row: int, eval_share: float) -> bool:
    """Whether row ``row`` belongs to the evaluation split (a property of the row number alone)."""
    return mix64(row) < eval_share * 2.0**64


class OpenSource:
    """A source ready to draw from: its spec, its modality, and its rows (None for built-in kinds).

    The rows' index is built on first use (``rows``), so that what only asks *which* source a draw
    reads (``planned_counts``, the sample cache's pre-rendering, a dry run) never reads a large file.
    """

    def __init__(self, spec: SourceSpec, modality: str, path: Path | None = None, image_folder: Path | None = None,
                 rows: Any = None) -> None:
        self.spec, self.modality, self.path, self.image_folder = spec, modality, path, image_folder
        self._rows = rows

    @property
    def rows(self):
        if self._rows is None and self.path is not None:
            self._rows = open_rows(self.spec.kind, self.path)
            if len(self._rows) == 0:
                raise DataError(f"source {self.label!r} has no rows", source=str(self.path), key="path")
        return self._rows

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def built_in(self) -> bool:
        return self.spec.kind in BUILT_IN_KINDS

    def in_split(self, row: int, split: str) -> bool:
        return is_held_out(row, self.spec.eval_share) == (split == "eval")

    def pick(self, rng: random.Random, split: str) -> int:
        """A uniformly drawn row number of ``split``, advancing ``rng``."""
        for _ in range(MAX_TRIES):
            row = rng.randrange(len(self.rows))
            if self.in_split(row, split):
                return row
        raise DataError(f"the {split} split of source {self.label!r} is empty (eval_share "
                        f"{self.spec.eval_share} of {len(self.rows)} rows); change its eval_share",
                        source=str(self.spec.path), key="eval_share")

    def next_in_split(self, row: int, split: str) -> int:
        """The row after ``row`` in ``split`` (wrapping): how packing walks on to the next document."""
        for step in range(1, min(len(self.rows), MAX_TRIES) + 1):
            candidate = (row + step) % len(self.rows)
            if self.in_split(candidate, split):
                return candidate
        return row

    def has_split(self, split: str) -> bool:
        """Whether any row belongs to ``split`` (checked on up to MAX_TRIES rows)."""
        if self.built_in:
            return True
        return any(self.in_split(row, split) for row in range(min(len(self.rows), MAX_TRIES)))


def open_source(spec: SourceSpec) -> OpenSource:
    """A source's path checked and its modality settled; its rows are indexed on first use.

    Built-in kinds read nothing; ``hf`` and ``parquet`` open their table now, because its columns
    decide the modality (a memory map or the file's footer: cheap).
    """
    if spec.kind in BUILT_IN_KINDS:
        return OpenSource(spec, spec.fixed_modality)
    path = Path(spec.path).expanduser()
    check_exists(path)  # now, not at the first draw: a wrong path fails when the stage starts
    folder = Path(spec.image_folder).expanduser() if spec.image_folder else (path if path.is_dir() else path.parent)
    source = OpenSource(spec, spec.fixed_modality, path, folder.resolve())
    if source.modality is None:  # hf / parquet: the columns decide
        source.modality = row_modality(source.rows.columns, spec.text_field)
    return source


class SourceMixture:
    """The sources of one stage and split, grouped by modality, with the Weyl choice between them."""

    def __init__(self, specs: tuple[SourceSpec, ...], seed: int, split: str = "train",
                 opened: dict[str, OpenSource] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split, self.seed = split, seed
        opened = opened or {}
        sources = [opened.get(spec.label) or open_source(spec) for spec in specs]
        if split == "eval":  # a source with nothing held out cannot serve validation
            sources = [source for source in sources if source.has_split("eval")]
        self.by_modality: dict[str, list[OpenSource]] = {"text": [], "image": []}
        for source in sources:
            self.by_modality[source.modality].append(source)
        self.bounds = {modality: cumulative_shares([s.spec.weight for s in group])
                       for modality, group in self.by_modality.items()}
        self.offsets = {modality: random.Random(f"{seed}-sources-{modality}").random() for modality in self.bounds}

    @property
    def sources(self) -> list[OpenSource]:
        return self.by_modality["text"] + self.by_modality["image"]

    def has(self, modality: str) -> bool:
        return bool(self.by_modality[modality])

    def choose(self, modality: str, n: int) -> OpenSource:
        """The source of the ``n``-th sample of ``modality`` (0-based, counted over the whole run)."""
        group = self.by_modality[modality]
        if not group:
            raise DataError(f"the stage draws {modality} samples but declares no {modality} source; add one to "
                            f"stage.data.sources or set language_ratio to {0.0 if modality == 'text' else 1.0}",
                            key="stage.data.sources")
        point = (self.offsets[modality] + n * GOLDEN) % 1.0
        return group[min(bisect.bisect_right(self.bounds[modality], point), len(group) - 1)]

    def shares(self, modality: str) -> dict[str, float]:
        """Each source's declared share of the draws of ``modality``."""
        group = self.by_modality[modality]
        total = sum(s.spec.weight for s in group)
        return {s.label: s.spec.weight / total for s in group}


def cumulative_shares(weights: list[float]) -> list[float]:
    """Right edges of each weight's slice of [0, 1) (the last is exactly 1)."""
    total, edges, running = sum(weights), [], 0.0
    for weight in weights:
        running += weight
        edges.append(running / total)
    if edges:
        edges[-1] = 1.0
    return edges
