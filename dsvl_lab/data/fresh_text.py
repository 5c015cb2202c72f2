"""A second language corpus, "fresh" English the foundation LM never read: third-party docstrings.

Why: the tiny foundation LM was pretrained on :mod:`dsvl_lab.data.corpus`'s train split (~0.42M
tokens) until it over-fitted it. A miniature stage 2 (400 steps x 16 x 70% text x 256 tokens,
about 1.15M text tokens) re-reads that split about three times, and held-out perplexity rises even
with no images at all (pure-text control: 132.9 -> 203.5). A language-retention study would then
mistake over-fitting for multimodal forgetting. ``StageData(text_source="fresh")`` lets a stage
read this corpus instead; the language evaluation is unchanged (the foundation corpus's held-out
split), so the two can be compared directly.

What: the docstrings of a fixed, sorted list of modules of installed third-party packages
(``FRESH_MODULES``: numpy, scipy, matplotlib, PIL, torch, lightning, networkx, ...), harvested
like ``corpus.py`` harvests the standard library (module docstring, each public class with its
methods, each public function) and cleaned for a tiny LM:

* doctest and code lines (``>>>``, ``...`` and their output, literal blocks after ``::``,
  ``.. math::`` and other directive bodies) and whole ``Examples`` / ``See Also`` /
  ``References`` sections are dropped;
* numpydoc section headings and their underlines (``Parameters`` / ``----------``) are dropped,
  and so are the ``name : type`` rows of parameter tables and ``key: value`` property tables;
  the English descriptions stay. Google-style ``name (type):`` prefixes are cut the same way;
* reST markup is reduced to its text (``:func:`numpy.sum``` -> ``numpy.sum``, ``*x*`` -> ``x``,
  citation marks ``[1]_`` removed);
* a paragraph stays only if it reads as prose (at least ``PROSE_SHARE`` of its tokens plain
  words, at least ``MIN_PARAGRAPH_WORDS`` of them) and contains no LaTeX, URL or table rule;
* a paragraph that occurs in the foundation corpus (train *or* held-out, compared with
  whitespace normalised) is dropped: nothing here overlaps what the foundation LM read or what
  the evaluation measures. A paragraph repeated in the harvest (numpy's ``out`` / ``where``
  descriptions recur in every ufunc) is kept once, at its first occurrence in ``FRESH_MODULES``
  order, so no paragraph is in two documents. "Repeated" includes templates that differ only in
  identifiers and numbers (``template_key``: scipy's Array API note under ~450 function names);
  the foundation corpus's paragraphs are compared the same way;
* documents under ``MIN_WORDS`` words and exact duplicates are dropped.

Size (measured 2026-12-01: Python 3.11.7, numpy 2.4.6, scipy 1.17.1, torch 2.13.0, matplotlib
3.11.2, sympy 1.14.0, networkx 3.6.1): train 5,260 documents, 5.24M characters, 1.64M tokens of
the shipped tokenizer (3.2 characters a token, EOS included); held-out 516 documents, 0.50M
characters, 0.16M tokens. A 400-step miniature stage 2 reads about 1.2M text tokens: less than
one pass.

The split is the corpus's own rule (:func:`dsvl_lab.data.corpus.split_documents`: SHA-256 of the
document, ``HELDOUT_FRACTION`` held out, shared paragraphs removed from train). Training reads
only ``fresh_corpus().train`` (:func:`fresh_train_texts`); the held-out part exists so that a study
*could* measure fresh-text perplexity, and ``tests/test_fresh_text.py`` fails if any module of the
package other than this one names it.

The text depends on the installed package versions (docstrings change between releases):
``split_info`` records them, the modules that failed to import, and a content hash of each split.
It is kept in memory only (``lru_cache``), like the foundation corpus: a harvest takes about 9 s
in a process that has torch, scipy and matplotlib imported, 14 s cold (2 busy cores), small next
to a stage; a file cache would have to be keyed by the cleaning code as well as the versions to
never serve stale text. The harvest does not depend on what the process imported before (lazy
modules are asked for every name of ``__all__``; methods other packages attach are skipped).
"""
from __future__ import annotations

import importlib.metadata
import inspect
import re
import sys
import warnings
from functools import lru_cache
from typing import Iterator

from .corpus import (HELDOUT_FRACTION, MIN_WORDS, TextCorpus, content_hash, dedupe, imported_modules, load_corpus,
                     paragraphs, split_documents)

# Modules whose docstrings make the fresh corpus: a fixed, sorted list of public modules of the
# project's own dependencies and of theirs (networkx, sympy, jinja2, fsspec and filelock come with
# torch, mpmath with sympy, torchmetrics with lightning, pyparsing, fonttools, contourpy and
# dateutil with matplotlib, huggingface_hub, tokenizers, safetensors, regex and packaging with
# transformers, cloudpickle with submitit) that import in well under a second once torch is
# loaded and do nothing when imported: no matplotlib.pyplot (it picks a GUI backend), no
# torch.utils.tensorboard (it needs tensorboard). transformers is left out: its
# modeling_utils alone takes 3.4 s to import, and its docstrings change with every release.
# Modules add 2-700 KB of text each; the list is long because a 400-step stage 2 reads about 1.2M
# text tokens and should not repeat them. A module that fails to import is skipped and named in
# ``split_info["skipped_modules"]``.
FRESH_MODULES = (
    "PIL.Image", "PIL.ImageChops", "PIL.ImageCms", "PIL.ImageColor", "PIL.ImageDraw", "PIL.ImageEnhance",
    "PIL.ImageFile", "PIL.ImageFilter", "PIL.ImageFont", "PIL.ImageOps", "PIL.ImagePalette",
    "PIL.ImageSequence", "PIL.ImageStat", "cloudpickle", "contourpy", "dateutil.parser", "dateutil.rrule",
    "dateutil.tz", "filelock", "fontTools.feaLib.builder", "fontTools.misc.transform",
    "fontTools.pens.basePen", "fontTools.ttLib", "fontTools.varLib", "fsspec", "fsspec.spec",
    "huggingface_hub.file_download", "huggingface_hub.hf_api", "jinja2", "jsonargparse", "lightning.fabric",
    "lightning.fabric.strategies", "lightning.pytorch", "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers", "lightning.pytorch.plugins", "lightning.pytorch.strategies",
    "lightning.pytorch.utilities", "matplotlib", "matplotlib.animation", "matplotlib.artist",
    "matplotlib.axes", "matplotlib.axis", "matplotlib.backend_bases", "matplotlib.backend_tools",
    "matplotlib.backends.backend_agg", "matplotlib.cbook", "matplotlib.cm", "matplotlib.collections",
    "matplotlib.colorbar", "matplotlib.colors", "matplotlib.contour", "matplotlib.dates", "matplotlib.figure",
    "matplotlib.font_manager", "matplotlib.gridspec", "matplotlib.image", "matplotlib.layout_engine",
    "matplotlib.legend", "matplotlib.lines", "matplotlib.markers", "matplotlib.mlab", "matplotlib.offsetbox",
    "matplotlib.patches", "matplotlib.path", "matplotlib.projections", "matplotlib.quiver",
    "matplotlib.sankey", "matplotlib.scale", "matplotlib.spines", "matplotlib.streamplot", "matplotlib.table",
    "matplotlib.text", "matplotlib.ticker", "matplotlib.transforms", "matplotlib.tri", "matplotlib.widgets",
    "mpl_toolkits.axes_grid1", "mpl_toolkits.mplot3d.axes3d", "mpmath", "networkx",
    "networkx.algorithms.approximation", "networkx.algorithms.bipartite", "networkx.algorithms.community",
    "networkx.algorithms.connectivity", "networkx.algorithms.flow", "networkx.algorithms.isomorphism",
    "networkx.algorithms.tournament", "networkx.algorithms.tree", "networkx.utils", "numpy", "numpy.char",
    "numpy.exceptions", "numpy.fft", "numpy.lib", "numpy.lib.format", "numpy.lib.recfunctions",
    "numpy.lib.scimath", "numpy.lib.stride_tricks", "numpy.linalg", "numpy.ma", "numpy.polynomial",
    "numpy.polynomial.chebyshev", "numpy.polynomial.hermite", "numpy.polynomial.legendre",
    "numpy.polynomial.polynomial", "numpy.random", "numpy.rec", "numpy.strings", "numpy.testing",
    "packaging.specifiers", "packaging.version", "pyparsing", "regex", "safetensors.torch",
    "scipy.cluster.hierarchy", "scipy.cluster.vq", "scipy.constants", "scipy.differentiate", "scipy.fft",
    "scipy.integrate", "scipy.interpolate", "scipy.io", "scipy.io.matlab", "scipy.linalg",
    "scipy.linalg.interpolative", "scipy.ndimage", "scipy.odr", "scipy.optimize", "scipy.signal",
    "scipy.signal.windows", "scipy.sparse", "scipy.sparse.csgraph", "scipy.sparse.linalg", "scipy.spatial",
    "scipy.spatial.distance", "scipy.spatial.transform", "scipy.special", "scipy.stats",
    "scipy.stats.contingency", "scipy.stats.mstats", "scipy.stats.qmc", "scipy.stats.sampling", "submitit",
    "sympy", "sympy.categories", "sympy.codegen", "sympy.combinatorics", "sympy.crypto", "sympy.diffgeom",
    "sympy.holonomic", "sympy.ntheory", "sympy.physics.biomechanics", "sympy.physics.continuum_mechanics",
    "sympy.physics.control", "sympy.physics.mechanics", "sympy.physics.optics", "sympy.physics.quantum",
    "sympy.physics.units", "sympy.plotting", "sympy.solvers.ode", "sympy.stats", "sympy.vector", "tokenizers",
    "torch", "torch.amp", "torch.ao.nn.quantized", "torch.ao.quantization", "torch.autograd",
    "torch.autograd.functional", "torch.autograd.graph", "torch.compiler", "torch.cuda", "torch.distributed",
    "torch.distributed.checkpoint", "torch.distributed.fsdp", "torch.distributed.tensor",
    "torch.distributions", "torch.export", "torch.fft", "torch.func", "torch.fx", "torch.hub", "torch.jit",
    "torch.library", "torch.linalg", "torch.masked", "torch.nested", "torch.nn", "torch.nn.functional",
    "torch.nn.init", "torch.nn.parallel", "torch.nn.utils", "torch.nn.utils.parametrize",
    "torch.nn.utils.prune", "torch.nn.utils.rnn", "torch.onnx", "torch.optim", "torch.optim.lr_scheduler",
    "torch.optim.swa_utils", "torch.overrides", "torch.profiler", "torch.serialization",
    "torch.signal.windows", "torch.sparse", "torch.special", "torch.testing", "torch.utils.benchmark",
    "torch.utils.checkpoint", "torch.utils.data", "torchmetrics", "torchmetrics.audio",
    "torchmetrics.classification", "torchmetrics.clustering", "torchmetrics.detection",
    "torchmetrics.functional", "torchmetrics.image", "torchmetrics.retrieval", "torchmetrics.segmentation",
    "torchmetrics.text",
)

# Distribution names of the top-level packages whose import name differs.
DISTRIBUTIONS = {"PIL": "pillow", "dateutil": "python-dateutil", "fontTools": "fonttools", "mpl_toolkits": "matplotlib",
                 "huggingface_hub": "huggingface-hub"}

# Sections dropped whole (numpydoc headings, Google-style "Examples:" blocks): code and citations.
SKIPPED_SECTIONS = {"examples", "example", "see also", "references", "reference"}
# Sections whose unindented lines are "name : type" rows (numpydoc) or whose "name (type):" prefixes
# are cut (Google style); the indented descriptions are kept.
TABLE_SECTIONS = {"parameters", "other parameters", "returns", "yields", "receives", "raises", "warns",
                  "attributes", "methods", "args", "arguments", "keyword arguments", "kwargs", "shape"}
# Directives whose body is prose (kept, the directive line dropped); any other directive's body
# (math, code-block, plot, autosummary, ...) is dropped with it.
PROSE_DIRECTIVES = {"note", "warning", "hint", "important", "tip", "attention", "caution", "danger",
                    "deprecated", "versionadded", "versionchanged", "admonition"}
PROSE_SHARE = 0.8  # share of a paragraph's whitespace-separated tokens that must be plain words
MIN_PARAGRAPH_WORDS = 4  # shorter paragraphs ("Input array.") are table fragments, not prose

UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#+*])\1{2,}\s*$")
DIRECTIVE = re.compile(r"^\s*\.\.\s+(?:(\w[\w-]*)::|\[|_|\||\w)")
GOOGLE_HEADING = re.compile(r"^([A-Z][A-Za-z ]*?)\s*::?\s*$")
TABLE_ROW = re.compile(r"^\*{0,2}[\w.]+(?:\s*,\s*\*{0,2}[\w.]+)*\s+:(?:\s|$)")
KEY_VALUE = re.compile(r"^(?:[a-z_][\w.]*\s*:\s|\w+:$)")
NAME_TYPE_PREFIX = re.compile(r"^\*{0,2}[A-Za-z_][\w.]*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*\s*(?:\([^()]*\))?\s*:\s+")
ROLE = re.compile(r":[\w:+-]+:`~?(?:[^`<]*<)?([^`>]*)>?`")
WORD = re.compile(r"[(\"']*[A-Za-z][a-z]*(?:[-'’][A-Za-z]+)*[.,;:!?)\"']*")
IDENTIFIER = re.compile(r"\w[_.(\[]\w|\d")  # norm.pdf(x, loc_, x2: a name, a call, a number
IDENTIFIER_MASK = "\0"
NOT_PROSE = re.compile(r"\\[A-Za-z]+|https?://|www\.|\|\s*\||={3,}|-{3,}|\$|\{|\}|\bnan\b|\+\-")


# ============================================================================ the public entry points

@lru_cache(maxsize=1)
def fresh_corpus(heldout_fraction: float = HELDOUT_FRACTION) -> TextCorpus:
    """Harvest, clean and split the fresh corpus (cached per process).

    Measured on 2 busy cores: about 14 s in a fresh process (much of it importing torch, scipy,
    matplotlib, sympy, ...), about 9 s where those are already imported, as in a training run.
    """
    skipped: list[str] = []
    documents = collect_fresh_documents(skipped)
    train, heldout = split_documents(documents, heldout_fraction)
    info = {
        "python_version": sys.version.split()[0],
        "package_versions": package_versions(),
        "heldout_fraction": heldout_fraction,
        "min_words": MIN_WORDS,
        "modules": list(FRESH_MODULES),
        "skipped_modules": skipped,
        "train_sha256": content_hash(train),
        "heldout_sha256": content_hash(heldout),
    }
    return TextCorpus(tuple(train), tuple(heldout), info)


def fresh_train_texts() -> list[str]:
    """The training split of :func:`fresh_corpus`: the only fresh text a training run may read."""
    return fresh_corpus().train_texts()


def package_versions() -> dict[str, str]:
    """Installed versions of the distributions whose docstrings are harvested (the text depends on them)."""
    versions = {}
    for top in sorted({m.split(".")[0] for m in FRESH_MODULES}):
        distribution = DISTRIBUTIONS.get(top, top)
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[distribution] = "missing"
    return versions


# ============================================================================ harvesting

def collect_fresh_documents(skipped: list[str] | None = None) -> list[str]:
    """All fresh documents before the split, cleaned, filtered and deduplicated (see the module docstring)."""
    skipped = [] if skipped is None else skipped
    foundation = load_corpus()
    # Paragraphs the foundation LM read or the evaluation measures, and (added as we go) paragraphs
    # already harvested: boilerplate such as numpy's ``out`` / ``where`` descriptions is kept once.
    seen = {template_key(p) for split in (foundation.train, foundation.heldout) for d in split for p in paragraphs(d)}
    documents = []
    for document in harvested_documents(skipped):
        kept = []
        for paragraph in paragraphs(document):
            key = template_key(paragraph)
            if key not in seen:
                seen.add(key)
                kept.append(paragraph)
        text = "\n\n".join(kept)
        if len(text.split()) >= MIN_WORDS:
            documents.append(text)
    return dedupe(documents)


def normalised(paragraph: str) -> str:
    """The paragraph with whitespace normalised (how "the same paragraph" is compared)."""
    return " ".join(paragraph.split())


def template_key(paragraph: str) -> str:
    """The paragraph with identifiers masked: scipy repeats "zoom has experimental support for Python
    Array API Standard ..." under hundreds of function names, scipy.stats "... norm.pdf(x, loc, scale)
    ..." under every distribution. Paragraphs with the same key are one template, kept once."""
    tokens = [IDENTIFIER_MASK if IDENTIFIER.search(t) else t for t in paragraph.split()]
    if tokens and tokens[0][:1].islower():  # a sentence that starts with a function's name
        tokens[0] = IDENTIFIER_MASK
    return " ".join(tokens)


def harvested_documents(skipped: list[str]) -> Iterator[str]:
    """Cleaned docstrings of ``FRESH_MODULES``: per module its docstring, then one document per public
    class (with its methods) and function, sorted by name; an object re-exported by several modules
    counts once, in the first module of the list."""
    seen: set[int] = set()
    for module in imported_modules(FRESH_MODULES, skipped):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield from module_documents(module, seen)


def module_documents(module, seen: set[int]) -> list[str]:
    top = module.__name__.split(".")[0]
    # A lazy module (filelock, ...) holds a name in vars() only once something asked for it, so what
    # was imported before would change the harvest: ask for every name of __all__ first.
    for name in getattr(module, "__all__", ()):
        try:
            getattr(module, name, None)
        except Exception:  # a lazy import that fails here is as if the name did not exist
            pass
    texts = [own_text(module)]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or id(obj) in seen or not belongs_to(obj, top):
            continue
        seen.add(id(obj))
        texts.append(class_text(obj, top, seen) if inspect.isclass(obj) else own_text(obj))
    return [t for t in texts if t]


def belongs_to(obj, top: str) -> bool:
    """A class, function or documented callable (a numpy ufunc, a scipy distribution) of package ``top``."""
    if inspect.ismodule(obj) or not callable(obj):
        return False
    home = getattr(obj, "__module__", None) if (inspect.isclass(obj) or inspect.isroutine(obj)) \
        else type(obj).__module__
    return isinstance(home, str) and home.split(".")[0] == top


def class_text(cls: type, top: str, seen: set[int] | None = None) -> str:
    """A class docstring followed by its own public methods' and properties' docstrings.

    Methods of the class's private bases of the same package (matplotlib's ``_AxesBase`` under
    ``Axes``, torch's ``_C.TensorBase`` under ``Tensor``) are documented nowhere else: they join
    the first public class that has them.
    """
    seen = set() if seen is None else seen
    parts = [own_text(cls)]
    for klass in cls.__mro__:
        private = klass.__name__.startswith("_") or any(part.startswith("_") for part in klass.__module__.split("."))
        if klass is cls or private and belongs_to(klass, top) and id(klass) not in seen:
            seen.add(id(klass))
            parts += member_texts(klass, top)
    return "\n\n".join(p for p in parts if p)


def member_texts(cls: type, top: str) -> list[str]:
    """Docstrings of a class's own public methods and properties, sorted by name."""
    parts = []
    for name, member in sorted(vars(cls).items()):
        if name.startswith("_"):
            continue
        member = getattr(member, "__func__", member)
        function = getattr(member, "fget", None) or member
        home = getattr(function, "__module__", None)
        if home is not None and not (isinstance(home, str) and home.split(".")[0] == top):
            continue  # attached by another package at import time
        if callable(member) or isinstance(member, property):
            parts.append(own_text(member))
    return parts


def own_text(obj) -> str:
    """The object's own docstring, cleaned (an instance's only when it differs from its class's)."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or (not inspect.isclass(obj) and not inspect.isroutine(obj)
                                    and not inspect.ismodule(obj) and doc is type(obj).__doc__):
        return ""
    return clean_docstring(inspect.cleandoc(doc))


# ============================================================================ cleaning

def clean_docstring(doc: str) -> str:
    """A docstring as prose paragraphs separated by blank lines (see the module docstring for the rules)."""
    lines = [line.rstrip() for line in doc.expandtabs().splitlines()]
    kept: list[str] = []
    section = ""
    skip_indent: int | None = None  # drop lines indented deeper than this (a code or directive body)
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        following = lines[index + 1] if index + 1 < len(lines) else ""
        index += 1
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            kept.append("")
            continue
        if UNDERLINE.match(following) and not UNDERLINE.match(line):  # a numpydoc / reST heading
            section = stripped.lower()
            index += 1
            kept.append("")
            continue
        heading = GOOGLE_HEADING.match(stripped)
        if heading and indent == 0 and heading.group(1).lower() in SKIPPED_SECTIONS | TABLE_SECTIONS:
            section = heading.group(1).lower()
            kept.append("")
            continue
        if section in SKIPPED_SECTIONS or UNDERLINE.match(line):
            continue
        directive = DIRECTIVE.match(line)
        if directive:
            if (directive.group(1) or "") not in PROSE_DIRECTIVES:
                skip_indent = indent
            kept.append("")
            continue
        if stripped.startswith((">>>", "...")):
            skip_indent = None
            while index < len(lines) and lines[index].strip():  # the doctest's output
                index += 1
            kept.append("")
            continue
        if KEY_VALUE.match(stripped):  # "alpha: float or None", "Properties:": a property table
            continue
        if section in TABLE_SECTIONS:
            if indent == 0 or TABLE_ROW.match(stripped):  # a numpydoc "name : type" row
                continue
            stripped = NAME_TYPE_PREFIX.sub("", stripped)
        if stripped.endswith("::"):  # a literal block follows; "or::" alone says nothing without it
            skip_indent = indent
            stripped = stripped[:-2].rstrip() + ":"
            if len(stripped.split()) < 3:
                continue
        kept.append(strip_markup(stripped))
    blocks = "\n".join(kept).split("\n\n")
    prose = [b.strip() for b in blocks if is_prose(b)]
    return "\n\n".join(prose)


def strip_markup(line: str) -> str:
    """reST roles, literals, emphasis and citation marks reduced to their text."""
    line = ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), line)
    line = re.sub(r"``([^`]+)``", r"\1", line)
    line = re.sub(r"`~([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], line)
    line = re.sub(r"`([^`]+)`_?", r"\1", line)
    line = re.sub(r"\s?\[[\w#*-]+\]_", "", line)  # citation marks: "[1]_"
    line = re.sub(r"\*\*([^*]+)\*\*", r"\1", line)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", line)


def is_prose(paragraph: str) -> bool:
    """Mostly plain words, long enough, and no LaTeX, URL, table rule or braces."""
    tokens = paragraph.split()
    if len(tokens) < MIN_PARAGRAPH_WORDS or NOT_PROSE.search(paragraph):
        return False
    return prose_share(tokens) >= PROSE_SHARE


def prose_share(tokens: list[str]) -> float:
    return sum(bool(WORD.fullmatch(t)) for t in tokens) / len(tokens)
