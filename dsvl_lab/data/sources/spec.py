"""One data source of a stage, as its data spec declares it: a kind, a local path, a weight.

A stage's ``data.sources`` is a list of these (YAML or Python)::

    sources:
      - {kind: world, weight: 1}                                    # the procedural data world (the default)
      - {kind: llava, path: /data/sharegpt4v/caps.json, image_folder: /data/sharegpt4v, weight: 2}
      - {kind: text, path: /data/corpus.jsonl, weight: 1}           # language-only

Kinds, and what one row of each holds (``records.py`` turns every row into the same record):

* ``world``: the procedural task world of ``dsvl_lab.data.tasks`` (no path; what every stage
  read before sources existed). Multimodal.
* ``corpus``: the stage's built-in text (``data.text_source``: the foundation corpus or fresh
  text), as every stage read it before sources existed. Language-only.
* ``samples``: our JSONL sample files (``dsvl_lab.data.jsonl``: image, caption, qa, conversation).
* ``llava``: LLaVA / ShareGPT4V conversations, a ``.json`` list or ``.jsonl`` lines of
  ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}]}``.
* ``text``: plain text, a JSONL file with a ``text`` field, one ``.txt`` file, or a folder of them.
  Language-only; stage 2 packs documents into full sequences, as the paper does.
* ``hf``: a folder written by Hugging Face ``datasets`` (``save_to_disk``; read memory-mapped with
  ``load_from_disk``). Rows in any of the formats above.
* ``parquet``: a ``.parquet`` file, rows in any of the formats above.

Which modality a source feeds is fixed by its kind, except for ``hf`` and ``parquet``, whose
columns decide (a ``text`` column and no ``image`` one: language-only). The stage's
``language_ratio`` (and its warm-up) splits draws between the two modalities exactly as before;
inside a modality, sources share the draws in proportion to their weights.

Every user source keeps a held-out split (``eval_share`` of its rows, chosen by a hash of the row
number) that training never reads; validation batches read only it. Nothing is downloaded: a path
is a local file or folder, and it is checked when the stage starts (so a recipe with placeholder
paths still loads and prints).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import is_number, shown
from ...errors import InputError

IMAGE_KINDS = ("world", "samples", "llava")
TEXT_KINDS = ("corpus", "text")
EITHER_KINDS = ("hf", "parquet")  # the rows' columns decide
KINDS = IMAGE_KINDS + TEXT_KINDS + EITHER_KINDS
BUILT_IN_KINDS = ("world", "corpus")  # no path: the workbench's own data
DEFAULT_EVAL_SHARE = 0.01  # held-out rows of a user source (validation only; training never reads them)


@dataclass(frozen=True)
class SourceSpec:
    """One entry of ``stage.data.sources``.

    Args:
        kind: one of ``KINDS`` (see the module docstring).
        path: the local file or folder (user kinds only).
        weight: its share of the draws of its modality, relative to the other sources of that modality.
        name: how logs and counts call it (default: the kind, or the file's stem).
        image_folder: where relative image paths point (default: the folder of ``path``). Images
            must stay inside it unless ``allow_outside_paths``.
        eval_share: the share of rows held out for validation, never trained on.
        text_field: the column holding the text of a language-only row.
    """

    kind: str
    path: str | None = None
    weight: float = 1.0
    name: str | None = None
    image_folder: str | None = None
    eval_share: float = DEFAULT_EVAL_SHARE
    text_field: str = "text"
    allow_outside_paths: bool = False

    def __post_init__(self) -> None:
        def bad(key: str, problem: str) -> None:
            raise InputError(problem, key=f"stage.data.sources[{self.label}].{key}")

        if self.kind not in KINDS:
            bad("kind", f"must be one of {', '.join(KINDS)}, got {shown(self.kind)}")
        if self.kind in BUILT_IN_KINDS and self.path is not None:
            bad("path", f"the {self.kind} source is built in and reads no file; remove 'path'")
        if self.kind not in BUILT_IN_KINDS and not (isinstance(self.path, str) and self.path):
            bad("path", f"a {self.kind} source reads a local file or folder: give its path")
        if not (is_number(self.weight) and self.weight > 0):
            bad("weight", f"must be a number > 0, got {shown(self.weight)}")
        if not (is_number(self.eval_share) and 0.0 <= self.eval_share < 1.0):
            bad("eval_share", f"must be in [0, 1), got {shown(self.eval_share)}")
        for key in ("name", "image_folder"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                bad(key, f"must be a string, got {shown(getattr(self, key))}")
        if not isinstance(self.allow_outside_paths, bool):
            bad("allow_outside_paths", f"must be true or false, got {shown(self.allow_outside_paths)}")

    @property
    def label(self) -> str:
        """The source's name in counts, logs and messages."""
        if isinstance(self.name, str) and self.name:
            return self.name
        if isinstance(self.path, str) and self.path:
            return Path(self.path).stem or self.kind
        return str(self.kind)

    @property
    def fixed_modality(self) -> str | None:
        """"image" or "text" when the kind decides; None for hf / parquet (their columns decide)."""
        if self.kind in IMAGE_KINDS:
            return "image"
        if self.kind in TEXT_KINDS:
            return "text"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from their defaults: short stage cards, stable run hashes."""
        defaults = SourceSpec(kind="world")
        out = {"kind": self.kind}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name != "kind" and value != getattr(defaults, item.name):
                out[item.name] = value
        return out


def source_specs(value: Any) -> tuple[SourceSpec, ...]:
    """``stage.data.sources`` as given (a list of mappings or SourceSpecs) -> SourceSpecs, checked."""
    if not isinstance(value, (list, tuple)):
        raise InputError(f"must be a list of sources ({{kind: ..., path: ..., weight: ...}}), got {shown(value)}",
                         key="stage.data.sources")
    specs = []
    names = set(SourceSpec.__dataclass_fields__)
    for index, item in enumerate(value):
        if isinstance(item, SourceSpec):
            specs.append(item)
            continue
        if not isinstance(item, dict) or "kind" not in item:
            raise InputError(f"must be a mapping with a 'kind', got {shown(item)}", key=f"stage.data.sources[{index}]")
        unknown = sorted(set(item) - names)
        if unknown:
            raise InputError(f"unknown keys {unknown}; a source takes {sorted(names)}",
                             key=f"stage.data.sources[{index}]")
        specs.append(SourceSpec(**item))
    labels = [spec.label for spec in specs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InputError(f"two sources are called {repeated}: give each a distinct 'name'", key="stage.data.sources")
    return tuple(specs)
