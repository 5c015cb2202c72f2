"""The language-only corpus: real English that ships with every CPython, split into train and held-out.

Paper: DeepSeek-VL keeps about 70% language-only data in its joint pre-training (section 3.2)
so that the model does not lose its language ability, and it measures that ability on held-out
text (the Pile-test perplexity and the HellaSwag / MMLU benchmarks of table 7). The miniature
workbench needs the same two things without downloading anything:

* **text** — the help topics of ``pydoc_data`` (the language reference and library chapters that
  ``help("assert")`` shows, about 465 KB / 65k words) plus the docstrings of a fixed list of
  standard-library modules (their modules, classes, methods and functions);
* **a held-out split** that no training run ever reads, for :mod:`dsvl_lab.data.lm_eval`.

How the split is made, and why:

1. The text is cut into *documents*: one section of a help topic (a heading and its body), one
   module docstring, one class (its docstring and its methods' docstrings), one function
   docstring. Documents shorter than ``MIN_WORDS`` words are dropped (one-line fragments such as
   "Return self+value." teach nothing), and exact duplicates are dropped.
2. Each document goes to held-out when the SHA-256 of its text falls in the first
   ``HELDOUT_FRACTION`` of the hash range. The hash, not the position, decides: the split of a
   document never changes when documents are added, removed or reordered.
3. Paragraphs that occur both in a held-out and in a train document (the docs repeat some
   boilerplate) are removed from the train document, so no held-out paragraph is ever trained on.

Rule for callers: **training code reads only** :func:`train_texts` (or ``corpus.train``).
Held-out text is for :mod:`dsvl_lab.data.lm_eval`, which reads it through
:func:`evaluation_texts`; ``tests/test_text.py`` fails if any other module of the package
mentions ``evaluation_texts`` or ``.heldout``.

The corpus depends on the Python version (docstrings change between releases); ``split_info``
records the version and a content hash of each split, so a reported number can name its data.

    >>> from dsvl_lab.data.corpus import load_corpus
    >>> corpus = load_corpus()
    >>> corpus.stats()["train"]["characters"] > 300_000
    True
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

HELDOUT_FRACTION = 0.10  # share of documents (by hash) that only the evaluation reads (~75 KB, ~400 sentences)
MIN_WORDS = 20  # documents shorter than this are fragments, not text

# Standard-library modules whose docstrings join the corpus: a fixed, sorted list of modules that
# import in milliseconds, need no optional C library (no ssl, sqlite3, lzma, readline, tkinter) and
# do nothing when imported (not ``this``, ``antigravity`` or ``rlcompleter``, which touch the
# terminal or the browser). A module that fails to import anyway is skipped and named in
# ``split_info["skipped_modules"]``.
STDLIB_MODULES = (
    "abc", "argparse", "ast", "base64", "bdb", "bisect", "builtins", "calendar", "cmath", "cmd", "code",
    "codecs", "collections", "collections.abc", "colorsys", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "dis", "doctest", "email.message", "enum", "filecmp",
    "fileinput", "fnmatch", "fractions", "functools", "getopt", "gettext", "glob", "graphlib", "gzip",
    "hashlib", "heapq", "hmac", "html", "html.parser", "http.client", "inspect", "io", "ipaddress",
    "itertools", "json", "keyword", "linecache", "locale", "logging", "logging.handlers", "mailbox",
    "math", "mimetypes", "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle",
    "pkgutil", "platform", "posixpath", "pprint", "profile", "queue", "random", "re", "reprlib",
    "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "socketserver", "statistics", "string",
    "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "tokenize",
    "trace", "traceback", "types", "typing", "unittest", "urllib.parse", "uuid", "warnings", "weakref",
    "zipfile", "zlib",
)

# A heading in the help topics is a line underlined by a row of one punctuation character.
HEADING_UNDERLINE = re.compile(r"^([*=\-~^\"'`#+])\1{2,}$")


@dataclass(frozen=True)
class TextCorpus:
    """Documents of real English in two disjoint splits.

    ``train``: what training may read (also :meth:`train_texts`). ``heldout``: what only the
    language evaluation reads (through :func:`evaluation_texts`); never put it in a training mix.
    Each entry is one document: paragraphs joined by a blank line.
    """

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    split_info: dict = field(default_factory=dict)

    def train_texts(self) -> list[str]:
        """The training split (a fresh list, so callers can shuffle it)."""
        return list(self.train)

    def stats(self) -> dict[str, dict[str, int]]:
        """Documents, characters and (whitespace-separated) words of each split."""
        return {name: {"documents": len(docs), "characters": sum(len(d) for d in docs),
                       "words": sum(len(d.split()) for d in docs)}
                for name, docs in (("train", self.train), ("heldout", self.heldout))}


# ============================================================================ the public entry points

@lru_cache(maxsize=1)
def load_corpus(heldout_fraction: float = HELDOUT_FRACTION) -> TextCorpus:
    """Collect, clean and split the corpus (about a second; cached for the process)."""
    skipped: list[str] = []
    train, heldout = split_documents(collect_documents(skipped), heldout_fraction)
    info = {
        "python_version": sys.version.split()[0],
        "heldout_fraction": heldout_fraction,
        "min_words": MIN_WORDS,
        "skipped_modules": skipped,
        "sources": source_sizes(skipped),
        "train_sha256": content_hash(train),
        "heldout_sha256": content_hash(heldout),
    }
    return TextCorpus(tuple(train), tuple(heldout), info)


def train_texts() -> list[str]:
    """The training split of :func:`load_corpus`: the only corpus text a training run may read."""
    return load_corpus().train_texts()


def evaluation_texts() -> list[str]:
    """The held-out split, for the language evaluation (:mod:`dsvl_lab.data.lm_eval`) only.

    Training on this text would turn the perplexity and cloze numbers into memorisation tests,
    the contamination problem that benchmark papers check for. Do not call it from training code.
    """
    return list(load_corpus().heldout)


# ============================================================================ collecting documents

def collect_documents(skipped: list[str] | None = None) -> list[str]:
    """All documents before the split: deduplicated, fragments of fewer than MIN_WORDS words dropped.

    Modules that failed to import are appended to ``skipped``.
    """
    skipped = [] if skipped is None else skipped
    return dedupe(d for d in raw_documents(skipped) if len(d.split()) >= MIN_WORDS)


def source_sizes(skipped: list[str]) -> dict[str, dict[str, int]]:
    """Characters and words of each source before cleaning (the help topics alone: ~465 KB, ~65k words)."""
    from pydoc_data.topics import topics

    docstrings = list(stdlib_docstrings(list(skipped)))
    return {name: {"characters": sum(len(t) for t in texts), "words": sum(len(t.split()) for t in texts)}
            for name, texts in (("pydoc_topics", list(topics.values())), ("stdlib_docstrings", docstrings))}


def raw_documents(skipped: list[str]) -> Iterator[str]:
    """Every candidate document, help-topic sections first, in a fixed order."""
    yield from pydoc_sections()
    yield from stdlib_docstrings(skipped)


def pydoc_sections() -> Iterator[str]:
    """The help topics of ``pydoc_data``, cut into sections at their headings (sorted by topic name)."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield from split_at_headings(topics[name])


def split_at_headings(text: str) -> list[str]:
    """Cut a help topic before each heading (a title line followed by an underline of *, =, - ...)."""
    lines = text.splitlines()
    starts = [i for i in range(len(lines) - 1)
              if lines[i].strip() and HEADING_UNDERLINE.match(lines[i + 1].strip())]
    bounds = sorted({0, *starts, len(lines)})
    sections = ("\n".join(lines[a:b]) for a, b in zip(bounds, bounds[1:]))
    return [clean(s) for s in sections if s.strip()]


def stdlib_docstrings(skipped: list[str]) -> Iterator[str]:
    """Docstrings of the modules in ``STDLIB_MODULES``: the module, each public function, each class.

    A class and its methods make one document (they describe one thing). Only objects defined in
    the module itself count (``json`` re-exports ``JSONDecoder``; it is documented once, in
    ``json.decoder``'s own entry if that were listed), and only their *own* docstrings:
    ``inspect.getdoc`` would copy a base class's docstring into every subclass that has none.
    """
    for module in imported_modules(STDLIB_MODULES, skipped):
        # Touching deprecated names (typing.io, ...) warns; that is not the reader's business.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            documents = module_documents(module)
        yield from documents


def module_documents(module) -> list[str]:
    """The module docstring, then one document per public class and function, sorted by name."""
    documents = [own_doc(module)]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not defined_in(obj, module):
            continue
        documents.append(class_document(obj) if inspect.isclass(obj) else own_doc(obj))
    return documents


def imported_modules(names, skipped: list[str]) -> Iterator:
    """Each module of ``names`` that imports, in order; the names of those that do not go to ``skipped``."""
    for name in names:
        module = import_quietly(name)
        if module is None:
            skipped.append(name)
        else:
            yield module


def import_quietly(name: str):
    """Import a module, or None if this Python lacks it; deprecation warnings are not our business."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception:
        return None


def defined_in(obj, module) -> bool:
    """True for classes and functions of this module (or of its C accelerator, e.g. ``_functools``)."""
    home = getattr(obj, "__module__", None)
    name = module.__name__.rsplit(".", 1)[-1]
    return home in (module.__name__, "_" + name) and (inspect.isclass(obj) or callable(obj))


def class_document(cls: type) -> str:
    """A class docstring followed by its public methods' and properties' docstrings, one paragraph each."""
    parts = [own_doc(cls)]
    for name, member in sorted(vars(cls).items()):
        if name.startswith("_") or not defined_with(member, cls):
            continue
        member = getattr(member, "__func__", member)  # classmethod / staticmethod -> the function
        if callable(member) or isinstance(member, property):
            parts.append(own_doc(member))
    return "\n\n".join(p for p in parts if p)


def defined_with(member, cls: type) -> bool:
    """False for methods another package attached to the class at import time.

    transformers adds ``warning_once`` to ``logging.Logger`` when imported, for example; without
    this check the corpus would depend on what the process imported before reading it.
    """
    function = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
    home = getattr(function, "__module__", None)
    short = cls.__module__.rsplit(".", 1)[-1]
    return home is None or home in (cls.__module__, "_" + short, "_" + cls.__module__)


def own_doc(obj) -> str:
    doc = getattr(obj, "__doc__", None)
    return clean(inspect.cleandoc(doc)) if isinstance(doc, str) else ""


def clean(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines, so paragraphs are split the same way."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def dedupe(documents) -> list[str]:
    """Exact duplicates dropped, first occurrence kept (several functions share one docstring)."""
    return list(dict.fromkeys(documents))


# ============================================================================ the split

def is_heldout(document: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """The document's SHA-256, read as a number in [0, 1), decides; its position never matters."""
    digest = hashlib.sha256(document.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def paragraphs(document: str) -> list[str]:
    """A document's paragraphs: the pieces between blank lines."""
    return [p for p in document.split("\n\n") if p.strip()]


def split_documents(documents: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """(train, heldout); train documents lose any paragraph that also occurs in a held-out document."""
    heldout = [d for d in documents if is_heldout(d, fraction)]
    seen = {p.strip() for d in heldout for p in paragraphs(d)}
    train = []
    for document in documents:
        if is_heldout(document, fraction):
            continue
        kept = [p for p in paragraphs(document) if p.strip() not in seen]
        if kept and len(" ".join(kept).split()) >= MIN_WORDS:
            train.append("\n\n".join(kept))
    return train, heldout


def content_hash(documents: list[str]) -> str:
    """SHA-256 over the documents in order: names the exact text of a split in a report."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document.encode("utf-8") + b"\0")
    return digest.hexdigest()
