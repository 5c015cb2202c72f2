"""Miniature SigLIP pretraining: the low-res semantic tower learns to match images with captions.

Paper: SigLIP (Zhai et al., 2023) trains an image tower and a text tower with a *sigmoid* pairwise
loss: every (image, caption) pair of a batch is a binary problem, "do these belong together?",
with a learnable temperature t and bias b, logits ``t * <x_i, y_j> + b``. DeepSeek-VL keeps only
the image tower (SigLIP-L at 384 px) and drops its attention-pooling head (``attn_pool`` in the
checkpoint, unused by the original code). We do the same: the text tower and the pooling head
here are thrown away; only ``SigLIPViT`` ships.

Data: image/caption pairs from the task world at coarse detail (the captions describe what the
64 px view can show: chart types, colours, shapes, positions, large words), drawn at the world size
and shrunk to SigLIP's input exactly as the hybrid model shrinks it (``resize_antialiased``).

    dsvl-lab pretrain siglip --preset dsvl-tiny-hybrid --out runs/siglip-tiny
"""
from __future__ import annotations

import math
import random
import re
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SigLIPConfig
from ..data.stage_data import eval_seed
from ..data.tasks import FAMILIES, generate_sample
from ..data.tasks.ocr import WORDS
from ..data.tasks.screen import BUTTON_LABELS
from ..model.siglip import SigLIPBlock, SigLIPViT
from ..model.vision import Normalize, resize_antialiased
from ..processor import to_tensor
from .curves import log_curve
from .recipe import Recipe
from .step_data import StepDataModule, epoch_batch, parallel_map, to_pixels

RECIPES = {
    # Half the captions replaced by their text or chart views: the tower then reads words and labels
    # zero-shot (docs/lab_log.md, "The tiny SigLIP recipe").
    "tiny": Recipe(steps=1500, batch_size=128, lr=1e-3, warmup_steps=100, val_every=150,
                   extra={"train_pool": 24000, "text_width": 128, "text_depth": 3, "embed_dim": 128,
                          "max_caption_tokens": 64, "text_view_share": 0.5}),
    # small: sized by its step time (docs/lab_log.md, "Step times").
    "small": Recipe(steps=800, batch_size=64, lr=7e-4, warmup_steps=60, val_every=100,
                    extra={"train_pool": 16000, "text_width": 192, "text_depth": 3, "embed_dim": 192,
                           "max_caption_tokens": 64}),
}
RETRIEVAL_CANDIDATES = 100  # the "among 100 held-out candidates"
RETRIEVAL_GROUPS = 5  # groups of 100 held-out samples averaged (500 images in all)


# ============================================================================ data
def caption_pair(job: tuple[str, int, int, int]) -> tuple[np.ndarray, str, str]:
    """(low-res image [s, s, 3] uint8, caption, family) of one coarse sample; runs in a worker process."""
    torch.set_num_threads(1)
    family, seed, world_size, low_size = job
    sample = generate_sample(family, seed, detail="coarse", image_size=world_size)
    high = to_tensor(sample.image.convert("RGB"))[None]  # [1, 3, S, S] in [0, 1]
    low = resize_antialiased(high, low_size)[0].clamp(0, 1)  # [3, s, s]
    return (low.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy(), sample.caption, family


def caption_jobs(seeds, world_size: int, low_size: int) -> list[tuple[str, int, int, int]]:
    """Families cycle with the seed, so every family is equally represented."""
    return [(FAMILIES[i % len(FAMILIES)], seed, world_size, low_size) for i, seed in enumerate(seeds)]


def build_pairs(seeds, world_size: int, low_size: int, desc: str) -> dict[str, Any]:
    results = parallel_map(caption_pair, caption_jobs(seeds, world_size, low_size), desc=desc)
    return {"images": torch.from_numpy(np.stack([r[0] for r in results])),  # [N, s, s, 3] uint8
            "captions": [r[1] for r in results], "families": [r[2] for r in results]}


QUOTED = re.compile(r'"([^"]+)"')


def text_view(caption: str) -> str | None:
    """What is written in the image, in reading order: ``'Text: "music"'``; a chart's leader when nothing
    is quoted (``chart_view``); else None.

    Real SigLIP reads text because much of its web alt-text *is* the text in the picture. Our full
    captions also quote the words, but next to colours and numbers that already tell two images apart,
    so contrastive training can ignore the words. A caption that holds only the words cannot be matched
    without reading them. (Captions quote exactly the text drawn: OCR words, doc headings, button labels.)
    """
    words = QUOTED.findall(caption)
    if words:
        return "Text: " + " ".join(f'"{word}"' for word in words)
    return chart_view(caption)


# "the yellow bar (Wed) is the tallest", "the red line ends highest", "the blue slice is the largest"
CHART_LEADER = re.compile(r"the (\w+) (bar|line|slice)\b[^;.]*?(is the tallest|ends highest|is the largest)")
LEADER_VIEW = {"bar": "Tallest bar", "line": "Highest line", "slice": "Largest slice"}


def chart_view(caption: str) -> str | None:
    """A chart's leader alone: ``'Tallest bar: yellow'``; None for other captions.

    The text view's twin for charts: which series leads is one fact among the chart type, title,
    categories and colours of a full caption, which already tell two charts apart, so contrastive
    training can ignore it; a caption that holds only the leader cannot be matched without comparing
    the bars, lines or slices.
    """
    match = CHART_LEADER.search(caption)
    return f"{LEADER_VIEW[match.group(2)]}: {match.group(1)}" if match else None


def caption_views(captions: list[str], share: float, seed: int) -> list[str]:
    """Each caption, or (with probability ``share``, seeded) its text view when it has one."""
    rng = random.Random(seed)
    views = []
    for caption in captions:
        view = text_view(caption) if rng.random() < share else None
        views.append(view or caption)
    return views


def tokenize_captions(processor, captions: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [N, L] and mask [N, L]; captions longer than ``max_tokens`` are cut."""
    rows = [processor.encode_text(c, add_bos=False)[:max_tokens] for c in captions]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), processor.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = True
    return ids, mask


class CaptionPairs(StepDataModule):
    """A fixed pool of (low-res image, caption) pairs from train seeds; batch k samples it without replacement per
    epoch."""

    def __init__(self, recipe: Recipe, processor, world_size: int, low_size: int) -> None:
        super().__init__(recipe)
        self.processor, self.world_size, self.low_size = processor, world_size, low_size

    def prepare_pool(self) -> None:
        pool = build_pairs(range(self.recipe.extra["train_pool"]), self.world_size, self.low_size, "caption pool")
        self.images = pool["images"]
        captions = caption_views(pool["captions"], self.recipe.extra.get("text_view_share", 0.0), self.recipe.seed)
        self.ids, self.mask = tokenize_captions(self.processor, captions, self.recipe.extra["max_caption_tokens"])

    def train_batch(self, step: int) -> dict[str, Any]:
        index = epoch_batch(self.recipe.seed, step, len(self.images), self.recipe.batch_size)
        width = int(self.mask[index].sum(1).max())
        ids = self.ids[index, :width]  # [B, L]
        # Two images with the same caption (two OCR images of "music" seen through the text view) are
        # both positives for it: the sigmoid loss must not push a true match apart.
        same_caption = (ids[:, None, :] == ids[None, :, :]).all(-1)  # [B, B]
        return {"pixels": to_pixels(self.images[index]), "ids": ids, "mask": self.mask[index, :width],
                "same_caption": same_caption}


# ============================================================================ the two towers
class TextTower(nn.Module):
    """Caption ids [B, L] -> [B, width]: token + position embeddings, SigLIP blocks (no causal mask), mean pool."""

    def __init__(self, vocab_size: int, width: int, depth: int, max_tokens: int) -> None:
        super().__init__()
        block = SigLIPConfig(width=width, depth=depth, num_heads=max(1, width // 64), mlp_dim=4 * width)
        self.embed = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.randn(1, max_tokens, width) * 0.02)
        self.blocks = nn.ModuleList(SigLIPBlock(block) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=block.layer_norm_eps)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos[:, :ids.shape[1]]  # [B, L, width]
        # Padding keys get -inf: an additive [B, 1, 1, L] mask, the block's attention takes it as-is.
        for block in self.blocks:
            x = block_with_mask(block, x, mask)
        x = self.norm(x)
        weights = mask.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1)  # [B, width]


def block_with_mask(block: SigLIPBlock, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One pre-LN block whose attention ignores padding keys (the image blocks never pad)."""
    attention = block.attn
    batch, tokens, width = x.shape
    heads = attention.num_heads
    qkv = attention.qkv(block.norm1(x)).reshape(batch, tokens, 3, heads, width // heads)
    query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, L, head_dim]
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None, None, :])
    x = x + attention.proj(out.transpose(1, 2).reshape(batch, tokens, width))
    return x + block.mlp(block.norm2(x))


class SigLIPPretraining(L.LightningModule):
    """The image tower that ships (``vision``), plus a pooling head, a text tower, t and b that do not."""

    def __init__(self, siglip: dict[str, Any], vocab_size: int, recipe: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.recipe = Recipe(**recipe)
        config = SigLIPConfig(**siglip)
        extra = self.recipe.extra
        self.vision = SigLIPViT(config)
        self.normalize = Normalize(config.pixel_mean, config.pixel_std)
        self.image_head = nn.Linear(config.width, extra["embed_dim"])
        self.text = TextTower(vocab_size, extra["text_width"], extra["text_depth"], extra["max_caption_tokens"])
        self.text_head = nn.Linear(extra["text_width"], extra["embed_dim"])
        # SigLIP's initialisation: t = 10 (stored as log t), b = -10, so the many negatives start near 0.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(-10.0))

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.vision(self.normalize(pixels))  # [B, g*g, width]
        return F.normalize(self.image_head(tokens.mean(1)), dim=-1)  # [B, E]

    def embed_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_head(self.text(ids, mask)), dim=-1)  # [B, E]

    def sigmoid_loss(self, images: torch.Tensor, texts: torch.Tensor,
                     positives: torch.Tensor | None = None) -> torch.Tensor:
        """-mean over images of sum over captions of log sigmoid(z_ij * (t <x_i, y_j> + b)).

        z = +1 where caption j belongs to image i (the diagonal, or ``positives`` [B, B] when given), else -1.
        """
        logits = self.log_temperature.exp() * images.float() @ texts.float().T + self.bias  # [B, B]
        if positives is None:
            positives = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        signs = 2 * positives.to(logits.dtype) - 1
        return -F.logsigmoid(signs * logits).sum() / len(logits)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.sigmoid_loss(self.embed_images(batch["pixels"]), self.embed_texts(batch["ids"], batch["mask"]),
                                 batch.get("same_caption"))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/temperature", self.log_temperature.exp())
        return loss

    def configure_optimizers(self):
        return self.recipe.optimizer(self)


class ContrastiveSide(nn.Module):
    """Everything of the SigLIP run except the image tower (shares its parameters).

    DeepSeek-VL never uses it; it ships beside the tower as ``siglip_text.safetensors`` only so the
    zero-shot retrieval figure can be re-measured from the shipped files.
    """

    def __init__(self, module: SigLIPPretraining) -> None:
        super().__init__()
        self.image_head, self.text, self.text_head = module.image_head, module.text, module.text_head
        self.log_temperature, self.bias = module.log_temperature, module.bias


# ============================================================================ zero-shot retrieval
def heldout_pairs(n: int, world_size: int, low_size: int) -> dict[str, Any]:
    """n coarse samples from evaluation seeds (never drawn in training), families cycling."""
    return build_pairs([eval_seed(i) for i in range(n)], world_size, low_size, "held-out pairs")


@torch.no_grad()
def retrieval_accuracy(module: SigLIPPretraining, processor, pairs: dict[str, Any],
                       candidates: int = RETRIEVAL_CANDIDATES) -> dict[str, float]:
    """Image -> caption top-1 among ``candidates`` captions (groups of consecutive held-out samples).

    Each image's own caption is one of the group's captions; chance is 1 / candidates. Reported
    overall and per family (the family of the image).
    """
    was_training = module.training
    module.eval()
    ids, mask = tokenize_captions(processor, pairs["captions"], module.recipe.extra["max_caption_tokens"])
    images = torch.cat([module.embed_images(to_pixels(pairs["images"][i:i + 256]))
                        for i in range(0, len(ids), 256)])
    texts = torch.cat([module.embed_texts(ids[i:i + 256], mask[i:i + 256]) for i in range(0, len(ids), 256)])
    module.train(was_training)
    hits, families = [], []
    for start in range(0, len(ids) - candidates + 1, candidates):
        scores = images[start:start + candidates] @ texts[start:start + candidates].T  # [100, 100]
        hits += (scores.argmax(1) == torch.arange(candidates)).tolist()
        families += pairs["families"][start:start + candidates]
    figures = {"top1": float(np.mean(hits)), "chance": 1.0 / candidates, "images": len(hits)}
    for family in sorted(set(families)):
        figures[f"top1_{family}"] = float(np.mean([h for h, f in zip(hits, families) if f == family]))
    return figures


@torch.no_grad()
def reading_accuracy(module: SigLIPPretraining, processor, pairs: dict[str, Any]) -> dict[str, float]:
    """Does the tower read? Zero-shot, each held-out image against text views of every possible text.

    - OCR: the word, among the 8 words (each in its three printings; the best-scoring printing counts);
    - screen: the two button labels in order, among all ordered pairs; scored on the *left* label.
    Chance is 1/8 for both.
    """
    tasks = {
        "ocr_word": ("ocr", [(w, f'Text: "{p}"') for w in WORDS for p in (w, w.title(), w.upper())],
                     lambda caption: QUOTED.findall(caption)[0].lower(), len(WORDS)),
        "screen_left_label": ("screen", [(a, f'Text: "{a}" "{b}"') for a in BUTTON_LABELS for b in BUTTON_LABELS
                                         if a != b], lambda caption: QUOTED.findall(caption)[0], len(BUTTON_LABELS)),
    }
    was_training = module.training
    module.eval()
    figures = {}
    for name, (family, candidates, truth_of, classes) in tasks.items():
        rows = [i for i, f in enumerate(pairs["families"]) if f == family]
        images = module.embed_images(to_pixels(pairs["images"][rows]))  # [n, E]
        ids, mask = tokenize_captions(processor, [text for _, text in candidates],
                                      module.recipe.extra["max_caption_tokens"])
        best = (images @ module.embed_texts(ids, mask).T).argmax(1)  # [n]
        truths = [truth_of(pairs["captions"][i]) for i in rows]
        figures[f"read_{name}"] = float(np.mean([candidates[b][0] == t for b, t in zip(best.tolist(), truths)]))
        figures[f"read_{name}_chance"] = 1.0 / classes
    module.train(was_training)
    return figures


class RetrievalCurve(L.Callback):
    """A learning-curve point every ``every`` steps: top-1 retrieval on one held-out group of 100."""

    def __init__(self, processor, pairs: dict[str, Any], every: int) -> None:
        self.processor, self.pairs, self.every = processor, pairs, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            log_curve(trainer, "curve/retrieval_top1",
                      retrieval_accuracy(pl_module, self.processor, self.pairs)["top1"])
