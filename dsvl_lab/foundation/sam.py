"""Miniature SAM pretraining: the high-res tower learns to see fine detail, densely.

Paper: DeepSeek-VL's high-res tower is SAM-B, pretrained for promptable segmentation (Kirillov
et al., 2023): dense, per-pixel supervision that makes its features hold fine detail. Ours is
dense too: every pixel of a task image gets the label of the 1-pixel texture drawn there (none,
horizontal lines, vertical lines, checkerboard), which the generators know exactly
(``dsvl_lab.data.tasks.common.recording_textures``). These textures are the fine detail of the
task world: invisible in the 64 px view by construction, plain at full resolution. A light decoder
(LayerNorm + one linear layer per token, pixel-shuffled onto a grid of 4 x 4-pixel cells) reads
the SAM output tokens, the very features the aligner receives, and is thrown away afterwards, as
SAM's mask decoder is. Only ``SAMEncoder`` (with its neck and downsampling convs) ships.

The quality figure is the issue's "reason the hybrid exists": a fresh probe of the same decoder
shape, trained on frozen features, segments held-out fine images far better from SAM's features
than from SigLIP's (brought to the same token grid).

    dsvl-lab pretrain sam --preset dsvl-tiny-hybrid --out runs/sam-tiny
"""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SAMConfig
from ..data.stage_data import eval_seed
from ..data.tasks import FAMILIES, generate_sample
from ..data.tasks.common import recording_textures, texture_label_map
from ..model.sam import SAMEncoder
from ..model.vision import Normalize, resize_antialiased
from .curves import log_curve
from .recipe import Recipe
from .step_data import StepDataModule, epoch_batch, parallel_map, step_rng, to_pixels

TEXTURE_CLASSES = ("none", "horizontal", "vertical", "checker")  # label k = index; see texture_label_map
CELL = 4  # pixels per side of one label cell
RECIPES = {
    # Learning curve measured first (300-step probe run, tiny): held-out mIoU 0.10 @ 50 steps, 0.40 @ 100,
    # 0.69 @ 150, 0.72 @ 200, 0.76 @ 300: fast, then slow. Tiny gets 1000 steps (about 9 min).
    "tiny": Recipe(steps=1000, batch_size=32, lr=1e-3, warmup_steps=60, val_every=100,
                   extra={"train_pool": 6000, "fine_share": 0.75, "probe_train_pool": 768, "probe_eval_pool": 384}),
    # small: 3.1 s a step on 2 cores (6x tiny), so 300 steps (about 16 min) is what fits this session.
    "small": Recipe(steps=300, batch_size=32, lr=1e-3, warmup_steps=30, val_every=50,
                    extra={"train_pool": 3000, "fine_share": 0.75, "probe_train_pool": 768, "probe_eval_pool": 384}),
}
# Textured cells are rare (about 5% of a fine image): without weights "none everywhere" is a fine minimum.
CLASS_WEIGHTS = (0.2, 1.0, 1.0, 1.0)


# ============================================================================ dense labels
def cell_labels(pixel_labels: np.ndarray, cell: int = CELL) -> np.ndarray:
    """[S, S] pixel labels -> [S/cell, S/cell]: a cell takes the texture covering most of it, if any covers half."""
    size = pixel_labels.shape[0] // cell
    blocks = pixel_labels[:size * cell, :size * cell].reshape(size, cell, size, cell).transpose(0, 2, 1, 3)
    counts = np.stack([(blocks == k).sum((2, 3)) for k in range(len(TEXTURE_CLASSES))], -1)  # [s, s, K]
    textured = counts[..., 1:].argmax(-1) + 1
    return np.where(counts[..., 1:].max(-1) * 2 >= cell * cell, textured, 0).astype(np.uint8)


def dense_sample(job: tuple[str, int, str, int]) -> tuple[np.ndarray, np.ndarray, str]:
    """(image [S, S, 3] uint8, cell labels [S/4, S/4] uint8, family) of one sample; runs in a worker process."""
    family, seed, detail, size = job
    with recording_textures() as log:
        sample = generate_sample(family, seed, detail=detail, image_size=size)
    return np.asarray(sample.image.convert("RGB")), cell_labels(texture_label_map(log, size)), family


def dense_jobs(seeds, size: int, fine_share: float, salt: int = 0) -> list[tuple[str, int, str, int]]:
    jobs = []
    for i, seed in enumerate(seeds):
        fine = np.random.default_rng([salt, seed]).random() < fine_share
        jobs.append((FAMILIES[i % len(FAMILIES)], seed, "fine" if fine else "coarse", size))
    return jobs


def build_dense(jobs, desc: str) -> dict[str, Any]:
    results = parallel_map(dense_sample, jobs, desc=desc)
    return {"images": torch.from_numpy(np.stack([r[0] for r in results])),  # [N, S, S, 3] uint8
            "labels": torch.from_numpy(np.stack([r[1] for r in results])).long(),  # [N, S/4, S/4]
            "families": [r[2] for r in results]}


def heldout_fine(n: int, size: int, offset: int = 0) -> dict[str, Any]:
    """n fine samples from evaluation seeds (never drawn in training), families cycling."""
    return build_dense(dense_jobs([eval_seed(offset + i) for i in range(n)], size, fine_share=1.0), "held-out fine")


class DenseImages(StepDataModule):
    """A fixed pool of train-seed images (fine and coarse, all families) with cell labels, random flips."""

    def __init__(self, recipe: Recipe, size: int) -> None:
        super().__init__(recipe)
        self.size = size

    def prepare_pool(self) -> None:
        extra = self.recipe.extra
        pool = build_dense(dense_jobs(range(extra["train_pool"]), self.size, extra["fine_share"]), "texture pool")
        self.images, self.labels = pool["images"], pool["labels"]

    def train_batch(self, step: int) -> dict[str, Any]:
        index = epoch_batch(self.recipe.seed, step, len(self.images), self.recipe.batch_size)
        images, labels = to_pixels(self.images[index]), self.labels[index]
        # A horizontal flip keeps every texture's class (lines stay horizontal/vertical); it doubles the layouts.
        flip = torch.from_numpy(step_rng(self.recipe.seed, step, "flip").random(len(index)) < 0.5)
        images[flip], labels[flip] = images[flip].flip(-1), labels[flip].flip(-1)
        return {"pixels": images, "labels": labels}


# ============================================================================ decoder and metric
class DenseDecoder(nn.Module):
    """Tokens [B, g*g, C] -> logits [B, K, g*s, g*s]: one linear map per token onto its s x s cells."""

    def __init__(self, channels: int, grid: int, cells_per_token: int, classes: int = len(TEXTURE_CLASSES)) -> None:
        super().__init__()
        self.grid, self.cells, self.classes = grid, cells_per_token, classes
        self.norm = nn.LayerNorm(channels)
        self.linear = nn.Linear(channels, cells_per_token ** 2 * classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, g, s, k = len(tokens), self.grid, self.cells, self.classes
        x = self.linear(self.norm(tokens))  # [B, g*g, s*s*K]
        x = x.reshape(batch, g, g, s, s, k)  # [B, gy, gx, sy, sx, K]
        return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, k, g * s, g * s)  # [B, K, gy*sy, gx*sx]


def texture_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(CLASS_WEIGHTS, device=logits.device)
    return F.cross_entropy(logits.float(), labels, weight=weights)


def confusion(logits: torch.Tensor, labels: torch.Tensor, classes: int = len(TEXTURE_CLASSES)) -> torch.Tensor:
    """[K, K] counts of (true, predicted) cells."""
    predicted = logits.argmax(1)
    return torch.bincount((labels * classes + predicted).flatten(),
                          minlength=classes * classes).reshape(classes, classes)


def texture_miou(matrix: torch.Tensor) -> float:
    """Mean IoU over the three texture classes ("none" is left out: it is most of every image)."""
    matrix = matrix.double()
    ious = []
    for k in range(1, len(matrix)):
        union = matrix[k].sum() + matrix[:, k].sum() - matrix[k, k]
        if union > 0:
            ious.append(float(matrix[k, k] / union))
    return float(np.mean(ious)) if ious else float("nan")


class SAMPretraining(L.LightningModule):
    """The encoder that ships (``sam``, the whole ``vision_model.high``) plus a decoder that does not."""

    def __init__(self, sam: dict[str, Any], token_grid: int, recipe: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.recipe = Recipe(**recipe)
        config = SAMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in sam.items()})
        self.sam = SAMEncoder(config, token_grid)
        self.normalize = Normalize(config.pixel_mean, config.pixel_std)
        self.decoder = DenseDecoder(config.output_channels, token_grid, config.image_size // CELL // token_grid)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.sam(self.normalize(pixels))  # [B, g*g, 4C]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = texture_loss(self.decoder(self.features(batch["pixels"])), batch["labels"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return self.recipe.optimizer(self)


@torch.no_grad()
def decoder_miou(module: SAMPretraining, data: dict[str, Any], batch_size: int = 64) -> float:
    """mIoU of the pretraining decoder itself on held-out images (the learning curve)."""
    was_training = module.training
    module.eval()
    matrix = sum(confusion(module.decoder(module.features(to_pixels(data["images"][i:i + batch_size]))),
                           data["labels"][i:i + batch_size]) for i in range(0, len(data["labels"]), batch_size))
    module.train(was_training)
    return texture_miou(matrix)


class TextureCurve(L.Callback):
    """A learning-curve point every ``every`` steps: the decoder's mIoU on a few held-out fine images."""

    def __init__(self, images: dict[str, Any], every: int) -> None:
        self.images, self.every = images, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            log_curve(trainer, "curve/heldout_texture_miou", decoder_miou(pl_module, self.images))


# ============================================================================ the probe: SAM vs SigLIP
@torch.no_grad()
def sam_tokens(sam: SAMEncoder, images_uint8: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Frozen SAM output tokens [N, g*g, 4C] for raw uint8 images at SAM's size."""
    normalize = Normalize(sam.config.pixel_mean, sam.config.pixel_std)
    sam.eval()
    return torch.cat([sam(normalize(to_pixels(images_uint8[i:i + batch_size])))
                      for i in range(0, len(images_uint8), batch_size)])


@torch.no_grad()
def siglip_tokens(siglip, images_uint8: torch.Tensor, grid: int, batch_size: int = 64) -> torch.Tensor:
    """Frozen SigLIP tokens on the low-res view, bilinearly resized to the g x g grid: [N, g*g, D]."""
    normalize = Normalize(siglip.config.pixel_mean, siglip.config.pixel_std)
    siglip.eval()
    out = []
    for i in range(0, len(images_uint8), batch_size):
        low = resize_antialiased(to_pixels(images_uint8[i:i + batch_size]), siglip.config.image_size)
        tokens = siglip(normalize(low))  # [B, h*h, D]
        side = int(round(tokens.shape[1] ** 0.5))
        maps = tokens.transpose(1, 2).reshape(len(tokens), -1, side, side)  # [B, D, h, h]
        if side != grid:
            maps = F.interpolate(maps, size=(grid, grid), mode="bilinear", align_corners=False)
        out.append(maps.flatten(2).transpose(1, 2))  # [B, g*g, D]
    return torch.cat(out)


def train_probe(train_tokens: torch.Tensor, train_labels: torch.Tensor, grid: int, cells: int,
                steps: int = 600, batch_size: int = 64, lr: float = 3e-3, seed: int = 0) -> DenseDecoder:
    """A fresh ``DenseDecoder`` fitted to frozen tokens (AdamW, cosine to zero)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = DenseDecoder(train_tokens.shape[-1], grid, cells)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        index = torch.randint(len(train_tokens), (batch_size,), generator=generator)
        loss = texture_loss(probe(train_tokens[index]), train_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return probe


@torch.no_grad()
def probe_miou(probe: DenseDecoder, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    return texture_miou(sum(confusion(probe(tokens[i:i + 128]), labels[i:i + 128]) for i in range(0, len(tokens), 128)))


def probe_comparison(sam: SAMEncoder, siglip, train: dict[str, Any], heldout: dict[str, Any],
                     steps: int = 600) -> dict[str, float]:
    """Held-out texture mIoU of the same probe on frozen SAM tokens and on frozen SigLIP tokens."""
    grid = sam.token_grid
    cells = train["labels"].shape[-1] // grid
    figures: dict[str, float] = {}
    for name, tokens in (("sam", lambda x: sam_tokens(sam, x)), ("siglip", lambda x: siglip_tokens(siglip, x, grid))):
        probe = train_probe(tokens(train["images"]), train["labels"], grid, cells, steps=steps)
        figures[f"{name}_miou"] = probe_miou(probe, tokens(heldout["images"]), heldout["labels"])
    figures["ratio"] = figures["sam_miou"] / max(figures["siglip_miou"], 1e-6)
    figures["probe_steps"] = steps
    figures["train_images"], figures["heldout_images"] = len(train["labels"]), len(heldout["labels"])
    return figures
