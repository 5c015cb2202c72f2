"""Pictures of the shipped foundation parts: learning curves, what SAM sees that SigLIP cannot, retrieval.

Used by ``notebooks/03_foundation.ipynb``; everything reads the shipped files in
``data_samples/foundation/`` (no training beyond a small probe).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from ..foundation import recipe, sam, siglip
from ..foundation.run import shipped_contrastive_siglip, shipped_encoders
from ..foundation.step_data import to_pixels
from ..processor import DSVLProcessor

CURVE_KEYS = {"lm": "heldout_perplexity", "siglip": "retrieval_top1", "sam": "heldout_texture_miou"}
TEXTURE_COLORS = np.array([[255, 255, 255], [214, 39, 40], [31, 119, 180], [44, 160, 44]], dtype=np.uint8)


def load_cards(size: str = "tiny") -> dict[str, dict[str, Any]]:
    """{part: model card} of the shipped parts of one size."""
    return {part: json.loads((recipe.FOUNDATION_DIR / size / f"{part}.json").read_text()) for part in recipe.PARTS}


def plot_learning_curves(cards: dict[str, dict[str, Any]]):
    """One panel per part: the held-out figure logged during pretraining, against the step."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cards), figsize=(3.6 * len(cards), 2.8), squeeze=False)
    for ax, (part, card) in zip(axes[0], cards.items()):
        key = CURVE_KEYS[part]
        points = [(row["step"], row[key]) for row in card["learning_curve"] if key in row]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_title(f"{part}: {key.replace('_', ' ')}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def texture_probe_views(size: str = "tiny", n_show: int = 4, train_images: int = 256, heldout_images: int = 64,
                        probe_steps: int = 300) -> dict[str, Any]:
    """Fit the SAM and SigLIP probes on frozen shipped features; predict texture maps of held-out fine images."""
    config = recipe.reference_config(size)
    encoder, low = shipped_encoders(size)
    image_size, grid = config.sam.image_size, config.token_grid
    train = sam.build_dense(sam.dense_jobs(range(10**6, 10**6 + train_images), image_size, fine_share=1.0),
                            "probe pool")
    heldout = sam.heldout_fine(heldout_images, image_size)
    cells = train["labels"].shape[-1] // grid
    views: dict[str, Any] = {"images": heldout["images"][:n_show], "labels": heldout["labels"][:n_show], "miou": {}}
    for name, tokens in (("SAM", lambda x: sam.sam_tokens(encoder, x)),
                         ("SigLIP", lambda x: sam.siglip_tokens(low, x, grid))):
        probe = sam.train_probe(tokens(train["images"]), train["labels"], grid, cells, steps=probe_steps)
        heldout_tokens = tokens(heldout["images"])
        views["miou"][name] = sam.probe_miou(probe, heldout_tokens, heldout["labels"])
        with torch.no_grad():
            views[name] = probe(heldout_tokens[:n_show]).argmax(1)
    return views


def plot_texture_probe(views: dict[str, Any], panel: float = 2.0):
    """Rows: held-out fine images. Columns: the image, the true texture map, the SAM probe, the SigLIP probe."""
    import matplotlib.pyplot as plt

    columns = ["image", "true textures", "SAM probe", "SigLIP probe"]
    rows = len(views["images"])
    fig, axes = plt.subplots(rows, 4, figsize=(4 * panel, rows * panel), squeeze=False)
    for r in range(rows):
        maps = [views["images"][r].numpy(), views["labels"][r], views["SAM"][r], views["SigLIP"][r]]
        for c, picture in enumerate(maps):
            ax = axes[r, c]
            ax.imshow(picture if c == 0 else TEXTURE_COLORS[np.asarray(picture)], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                title = columns[c]
                if c >= 2:
                    title += f"\nmIoU {views['miou'][columns[c].split()[0]]:.2f}"
                ax.set_title(title, fontsize=9)
    fig.suptitle("texture classes: red horizontal, blue vertical, green checker", fontsize=9)
    fig.tight_layout()
    return fig


def retrieval_examples(size: str = "tiny", n_show: int = 4, k: int = 3) -> list[dict[str, Any]]:
    """For held-out coarse images: the true caption and the top-k of 100 candidates, with scores."""
    config = recipe.reference_config(size)
    module = shipped_contrastive_siglip(size)
    pairs = siglip.heldout_pairs(siglip.RETRIEVAL_CANDIDATES, config.sam.image_size, config.siglip.image_size)
    ids, mask = siglip.tokenize_captions(DSVLProcessor.from_config(config), pairs["captions"],
                                         module.recipe.extra["max_caption_tokens"])
    with torch.no_grad():
        scores = module.embed_images(to_pixels(pairs["images"])) @ module.embed_texts(ids, mask).T  # [100, 100]
    examples = []
    for i in range(n_show):
        top = scores[i].topk(k)
        examples.append({"image": pairs["images"][i].numpy(), "truth": pairs["captions"][i],
                         "top": [(pairs["captions"][j], float(s), j == i)
                                 for s, j in zip(top.values, top.indices.tolist())]})
    return examples


def plot_retrieval(examples: list[dict[str, Any]], panel: float = 1.6):
    """Each held-out image beside its top captions (the true one marked)."""
    import textwrap

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 2, figsize=(9, panel * len(examples)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 5]})
    for row, example in zip(axes, examples):
        row[0].imshow(example["image"], interpolation="nearest")
        row[0].set_xticks([]), row[0].set_yticks([])
        lines = [("+ " if hit else "  ") + f"{score:.2f}  " + textwrap.shorten(caption, 95)
                 for caption, score, hit in example["top"]]
        row[1].text(0, 0.5, "\n".join(lines), va="center", family="monospace", fontsize=7)
        row[1].axis("off")
    fig.suptitle("zero-shot retrieval among 100 held-out captions (+ = the image's own caption)", fontsize=9)
    fig.tight_layout()
    return fig
