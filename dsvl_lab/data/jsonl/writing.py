"""Writing samples: PNGs plus one JSONL file (:func:`write_jsonl`), and a contact-sheet preview
(:func:`contact_sheet`) of samples read back or freshly generated."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from ...atomic import write_text_atomic
from ..tasks import Sample


def write_jsonl(samples: Iterable[Sample], path: str | os.PathLike, image_folder: str = "images") -> Path:
    """Write samples as PNGs plus one JSONL file; the JSONL appears whole or not at all."""
    path = Path(path)
    (path.parent / image_folder).mkdir(parents=True, exist_ok=True)
    lines = []
    for sample in samples:
        sample_id = f"{sample.family}-{sample.detail}-{sample.seed}"
        relative = f"{image_folder}/{sample_id}.png"
        sample.image.save(path.parent / relative, optimize=True)
        lines.append(json.dumps({
            "id": sample_id, "family": sample.family, "detail": sample.detail, "seed": sample.seed,
            "image": relative, "caption": sample.caption,
            "qa": [{"question": q.question, "answer": q.answer, "options": q.options, "kind": q.kind,
                    "detail": q.detail} for q in sample.qa],
        }, ensure_ascii=False))
    return write_text_atomic(path, "\n".join(lines) + "\n")



def contact_sheet(samples: list[Sample], out: str | os.PathLike, columns: int = 4, dpi: int = 100) -> Path:
    """A grid of sample images with their first questions and answers under each, saved as PNG."""
    import textwrap

    # A bare Figure with the Agg canvas: never touches pyplot's global backend (a notebook's
    # inline figures keep working after a preview).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not samples:
        raise ValueError("no samples to preview")
    rows = -(-len(samples) // columns)
    figure = Figure(figsize=(3.2 * columns, 4.2 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, sample in zip(axes.flat, samples):
        axis.imshow(sample.image)
        lines = [f"{sample.family} / {sample.detail} / seed {sample.seed}"]
        for qa in sample.qa[:2]:
            lines += textwrap.wrap(f"Q: {qa.question}", 42) + [f"A: {qa.answer}"]
        axis.set_title("\n".join(lines), fontsize=7, loc="left")
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=dpi)
    return out
