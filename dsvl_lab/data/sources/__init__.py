"""Local datasets a stage can train on, mixed with the procedural world by declared weights.

A stage's data spec lists its ``sources`` (``stage.data.sources``); with none, a stage reads what
it always read: the procedural world and the built-in text. One file per step, each using only
the ones above it:

* ``spec.py``: :class:`SourceSpec`, one declared source (kind, local path, weight, held-out share);
* ``rows.py``: random access to a file's rows through a byte-offset index or Arrow's memory map;
* ``records.py``: a row of any format (LLaVA, our sample files, text) -> one checked record;
* ``mixture.py``: which source and which row a draw reads, pure functions of (seed, draw);
* ``packing.py``: language-only samples packed to the full sequence length;
* ``convert.py``: writing records in each format (for tests, the walk-through and users).

How a record becomes token ids is ``stage_data.py``'s, beside the world's sample formats.
"""
from .mixture import SourceMixture, is_held_out, open_source
from .records import ImageRecord, image_record, text_of
from .rows import open_rows
from .spec import KINDS, SourceSpec, source_specs

__all__ = ["SourceSpec", "source_specs", "KINDS", "open_rows", "ImageRecord", "image_record", "text_of",
           "SourceMixture", "open_source", "is_held_out"]
