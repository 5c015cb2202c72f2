"""Random access to the rows of a local dataset file, without reading the file into memory.

Every reader answers ``len(rows)`` and ``rows.get(i) -> (value, where)``: the ``i``-th row as
parsed JSON (or a ``datasets`` / parquet row as a dict, or a text document as a string) and
``"file:line"`` for messages. Rows are found through an index of byte offsets built once by one
pass over the file (8 bytes a row: a 100,000-line file costs 1.6 MB of index, whatever its size),
or through Arrow (``datasets``' memory map; parquet one row group at a time). So a source far larger than
memory is read lazily, one drawn row at a time, and a batch is still a pure function of
(seed, step): exact resume needs no saved file position.

Files are opened lazily in each process (a DataLoader worker reopens after the fork). A line
that is not a JSON object comes back as a :class:`DataError` naming ``file:line``; what the
fields must hold is checked later (``records.py``).
"""
from __future__ import annotations

import os
import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonl import MAX_LINE_BYTES
from ..jsonl.errors import DataError
from ..jsonl.lines import parse_record

CHUNK = 1 << 20  # bytes read at a time while indexing


def offsets() -> array:
    """A growing array of 64-bit integers: 8 bytes an entry while indexing, not a Python int's 36."""
    return array("q")


class LazyFile:
    """A binary file opened on first use in each process (a handle must not cross a fork)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle, self._pid = None, None

    def read(self, start: int, end: int) -> bytes:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = self.path.open("rb"), os.getpid()
        self._handle.seek(start)
        return self._handle.read(end - start)

    def __getstate__(self) -> dict:  # pickled into DataLoader workers without the open handle
        return {"path": self.path, "_handle": None, "_pid": None}


class OffsetRows:
    """Rows that are byte ranges of one file: ``starts``, ``ends`` and 1-based ``lines`` (numpy arrays)."""

    def __init__(self, path: Path, starts, ends, lines) -> None:
        self.path, self.file = path, LazyFile(path)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.lines = np.asarray(lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def where(self, index: int) -> str:
        return f"{self.path}:{int(self.lines[index])}"

    def raw(self, index: int) -> bytes:
        start, end = int(self.starts[index]), int(self.ends[index])
        if end - start > MAX_LINE_BYTES:
            raise DataError(f"row too long: {end - start:,} bytes, over {MAX_LINE_BYTES:,}; a sample is a short "
                            f"JSON object", source=self.where(index), key="line", reason="line too long")
        return self.file.read(start, end)

    def get(self, index: int) -> tuple[Any, str]:
        where = self.where(index)
        try:
            return parse_record(self.raw(index)), where
        except DataError as error:
            raise error.at(where) from None


def jsonl_rows(path: Path) -> OffsetRows:
    """One row per non-blank line of a JSONL file."""
    starts, ends, lines = offsets(), offsets(), offsets()
    with path.open("rb") as file:
        offset, number = 0, 0
        for raw in file:  # buffered: one line at a time in memory
            number += 1
            if raw.strip():
                starts.append(offset)
                ends.append(offset + len(raw))
                lines.append(number)
            offset += len(raw)
    return OffsetRows(path, starts, ends, lines)


# In a JSON text only these bytes change the nesting: quotes, backslashes and brackets.
JSON_STRUCTURE = re.compile(rb'["\\{}\[\]]')


def json_array_rows(path: Path) -> OffsetRows:
    """One row per element of a top-level JSON list (LLaVA's ``.json``), found in one streaming pass.

    Only the bytes that change the nesting are visited (a regular expression skips the rest), so
    the pass runs at close to disk speed and holds one chunk in memory.
    """
    starts, ends, lines = offsets(), offsets(), offsets()
    depth, in_string, skip_to, start = 0, False, -1, -1
    newlines, counted_to, seen_list = 0, 0, False
    with path.open("rb") as file:
        base = 0
        while chunk := file.read(CHUNK):
            for match in JSON_STRUCTURE.finditer(chunk):
                at = base + match.start()
                if at < skip_to:
                    continue  # the character after a backslash
                char = match.group()
                if in_string:
                    if char == b"\\":
                        skip_to = at + 2
                    elif char == b'"':
                        in_string = False
                    continue
                if char == b'"':
                    in_string = True
                elif char in b"{[":
                    if depth == 0 and char != b"[":
                        raise DataError("not a JSON list: a LLaVA .json file is one list [{...}, {...}]; for one "
                                        "object per line, name the file .jsonl", source=f"{path}:1", key="file")
                    seen_list = True
                    depth += 1
                    if depth == 2:
                        start = at
                        newlines += chunk.count(b"\n", counted_to - base if counted_to > base else 0, match.start())
                        counted_to = at
                        starts.append(start)
                        lines.append(newlines + 1)
                elif char in b"}]":
                    depth -= 1
                    if depth == 1:
                        ends.append(at + 1)
            newlines += chunk.count(b"\n", counted_to - base if counted_to > base else 0)
            base += len(chunk)
            counted_to = base
    if not seen_list or depth != 0 or len(starts) != len(ends):
        raise DataError("not a complete JSON list: the file ends inside a list or object (truncated?)",
                        source=f"{path}:{newlines + 1}", key="file")
    return OffsetRows(path, starts, ends, lines)


class TextDocuments:
    """Plain-text documents: one ``.txt`` file cut at blank lines, or a folder of ``.txt`` files (one each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self.files = sorted(str(p) for p in path.rglob("*.txt"))
            if not self.files:
                raise DataError("no .txt files in this folder", source=str(path), key="path")
            self.paragraphs = None
        else:
            self.files = None
            self.paragraphs = paragraph_rows(path)

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.paragraphs)

    def get(self, index: int) -> tuple[Any, str]:
        if self.files is not None:
            file = Path(self.files[index])
            where, raw = f"{file}:1", file.read_bytes()
        else:
            where, raw = self.paragraphs.where(index), self.paragraphs.raw(index)
        try:
            return {"text": raw.decode("utf-8-sig").strip()}, where
        except UnicodeDecodeError as error:
            raise DataError(f"not UTF-8: byte {error.start} cannot be decoded; re-save the file as UTF-8",
                            source=where, key="text", reason="not UTF-8") from None


def paragraph_rows(path: Path) -> OffsetRows:
    """Byte ranges of the paragraphs (runs of non-blank lines) of a text file."""
    starts, ends, lines = offsets(), offsets(), offsets()
    with path.open("rb") as file:
        offset, number, open_paragraph = 0, 0, False
        for raw in file:
            number += 1
            if raw.strip():
                if not open_paragraph:
                    starts.append(offset)
                    lines.append(number)
                    open_paragraph = True
                end = offset + len(raw)
            elif open_paragraph:
                ends.append(end)
                open_paragraph = False
            offset += len(raw)
        if open_paragraph:
            ends.append(end)
    return OffsetRows(path, starts, ends, lines)


class ArrowRows:
    """Rows of a ``datasets`` folder (``load_from_disk``: memory-mapped Arrow).

    An ``Image`` column is read undecoded (``{"bytes", "path"}``): pixels are decoded only when
    drawn, by the processor's safe loader.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._table = None

    @property
    def table(self):
        if self._table is None:
            self._table = open_saved_dataset(self.path)
        return self._table

    def __len__(self) -> int:
        return len(self.table)

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def get(self, index: int) -> tuple[Any, str]:
        return dict(self.table[int(index)]), f"{self.path}:{index + 1}"

    def __getstate__(self) -> dict:  # workers reopen the memory map themselves
        return {"path": self.path, "_table": None}


def open_saved_dataset(path: Path):
    """A ``datasets.Dataset`` over a ``save_to_disk`` folder, Image columns left undecoded."""
    import datasets

    try:
        table = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises several types for a wrong folder
        raise DataError(f"cannot open {path} as a folder written by datasets' save_to_disk "
                        f"({type(error).__name__}: {error})", source=str(path), key="path") from None
    if isinstance(table, datasets.DatasetDict):
        raise DataError(f"{path} holds several splits {list(table)}: point the source at one split's folder",
                        source=str(path), key="path")
    for name, feature in table.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            table = table.cast_column(name, datasets.Image(decode=False))
    return table


class ParquetRows:
    """Rows of a parquet file, read one row group at a time (the last one kept) through pyarrow."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        try:
            metadata = pq.ParquetFile(path).metadata
        except Exception as error:  # pyarrow raises ArrowInvalid and OSError for non-parquet files
            raise DataError(f"cannot open {path} as a parquet file ({type(error).__name__}: {error})",
                            source=str(path), key="path") from None
        sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
        self.group_starts = np.cumsum([0] + sizes)
        self.columns = list(metadata.schema.to_arrow_schema().names)  # top-level columns
        self._file, self._group, self._rows = None, -1, None

    def __len__(self) -> int:
        return int(self.group_starts[-1])

    def get(self, index: int) -> tuple[Any, str]:
        import pyarrow.parquet as pq

        group = int(np.searchsorted(self.group_starts, index, side="right")) - 1
        if group != self._group:
            if self._file is None:
                self._file = pq.ParquetFile(self.path)
            self._rows, self._group = self._file.read_row_group(group), group
        row = self._rows.slice(index - int(self.group_starts[group]), 1).to_pylist()[0]
        return row, f"{self.path}:{index + 1}"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_group": -1, "_rows": None}


def check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"no such file or folder: {path}; point the source's path at your local data (nothing "
                        f"is downloaded)", source=str(path), key="path", reason="missing path")


def open_rows(kind: str, path: Path):
    """The reader for a source kind and path: JSONL, a JSON list, text documents, or Arrow rows."""
    check_exists(path)
    if kind == "hf":
        return ArrowRows(path)
    if kind == "parquet":
        return ParquetRows(path)
    if kind == "text" and (path.is_dir() or path.suffix == ".txt"):
        return TextDocuments(path)
    if path.is_dir():
        raise DataError(f"a {kind} source reads one file, and {path} is a folder", source=str(path), key="path")
    if kind == "llava" and path.suffix == ".json":
        return json_array_rows(path)
    return jsonl_rows(path)
