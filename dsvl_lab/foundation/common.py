"""What the three pretraining runs share: recipes, step-indexed data, the trainer, export and cards.

DeepSeek-VL starts from three pretrained parts (facts sheet 2.1): DeepSeek-LLM, SigLIP-L (trained
contrastively on image-text pairs) and SAM-B (trained for segmentation). Stages 1 and 2 keep the
encoders frozen, so the miniatures need pretrained parts of their own. Each part is made by one
Lightning run (``dsvl-lab pretrain lm|siglip|sam``) and shipped as one safetensors file per part
and size under ``data_samples/foundation/<size>/`` with a model card (``<part>.md`` for people,
``<part>.json`` for code: the recipe, wall time, quality figures and checksums).

Resumable by construction, like the stage data: batch ``k`` is a pure function of ``k`` (and the
recipe's seed), the data module remembers the next step, and Lightning's ``last.ckpt`` holds both.
"""
from __future__ import annotations

import hashlib
import math
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..atomic import atomic_write, write_json_atomic, write_text_atomic
from ..config import DSVLConfig
from ..data.datamodule import RemainingSteps
from ..errors import InputError

FOUNDATION_DIR = Path(__file__).resolve().parents[2] / "data_samples" / "foundation"
SIZES = ("tiny", "small")
# Part -> the DSVLModel submodule it fills (attribute names follow the original checkpoint).
PARTS = {"lm": "language_model", "siglip": "vision_model.low", "sam": "vision_model.high"}
STORE_DTYPE = torch.bfloat16  # the test re-measures every quality figure from the bf16 files


class FoundationError(InputError):
    """A missing, altered or mismatched foundation file; the message says how to fix it."""


# ============================================================================ recipes
@dataclass(frozen=True)
class Recipe:
    """Everything a pretraining run depends on. The model card records it whole."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    precision: str = "bf16-mixed"  # CPU bf16 matmuls are ~4x faster here (WORKBENCH.md)
    val_every: int = 100  # steps between the learning-curve points
    extra: dict[str, Any] = field(default_factory=dict)  # part-specific knobs (pool sizes, seq_len, ...)

    def smoke(self) -> "Recipe":
        """A few steps on small pools: CI proves the command runs, not that it learns."""
        small = {k: min(v, 64) for k, v in self.extra.items() if k.endswith("pool")}
        if "task_samples" in self.extra:
            small["task_samples"] = min(self.extra["task_samples"], 8)
        extra = {**self.extra, **small}
        return replace(self, steps=6, batch_size=min(self.batch_size, 8), warmup_steps=2, val_every=3, extra=extra)


def size_of(preset: str | DSVLConfig) -> str:
    """'tiny' or 'small' from a preset name or config; anything else has no foundation weights."""
    name = preset.name if isinstance(preset, DSVLConfig) else preset
    for size in SIZES:
        if name.startswith(f"dsvl-{size}-"):
            return size
    raise FoundationError(f"no foundation weights for preset {name!r}: they exist for the dsvl-tiny-* and "
                          f"dsvl-small-* presets (real sizes load released weights with DSVLModel.from_pretrained)")


def reference_config(size: str) -> DSVLConfig:
    """The hybrid preset of a size: it holds every part (all encoders of one size share their shapes)."""
    return DSVLConfig.from_name(f"dsvl-{size}-hybrid")


# ============================================================================ schedules
def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  final_fraction: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak, then cosine decay to ``final_fraction`` of it (per step)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        # A Python float, not numpy's: the scheduler keeps the last lr in the checkpoint, and
        # Lightning reloads checkpoints with torch.load(weights_only=True), which refuses numpy scalars.
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw_with_schedule(module: nn.Module, recipe: Recipe) -> dict[str, Any]:
    """AdamW without decay on norms, biases and embeddings-like 1-d tensors; the schedule steps per batch."""
    decay, no_decay = [], []
    for _, param in module.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=recipe.betas)
    scheduler = warmup_cosine(optimizer, recipe.warmup_steps, recipe.steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ============================================================================ step-indexed data
class _Batches(Dataset):
    def __init__(self, make: Callable[[int], dict], steps: int) -> None:
        self.make, self.steps = make, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict:
        batch = self.make(step)
        batch["step"] = step
        return batch


class StepDataModule(L.LightningDataModule):
    """A data module whose training batch ``k`` is ``self.train_batch(k)``; subclasses define it.

    ``prepare_pool`` (once, in ``setup``) builds whatever fixed pool the batches index into.
    The next step is saved in checkpoints, so a resumed run sees the batches it would have seen.
    """

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.next_step = 0
        self._ready = False

    def prepare_pool(self) -> None:  # pragma: no cover - overridden
        pass

    def train_batch(self, step: int) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self._ready:
            self.prepare_pool()
            self._ready = True

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Batches(self.train_batch, self.recipe.steps), batch_size=None,
                          sampler=RemainingSteps(self, self.recipe.steps))

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training and isinstance(batch, dict) and "step" in batch:
            self.next_step = int(batch["step"]) + 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"next_step": self.next_step, "recipe": asdict(self.recipe)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A checkpoint of another recipe never gets here: fit_resumable refuses it first (run_folder.check_resume).
        self.next_step = int(state["next_step"])


def step_rng(seed: int, step: int, stream: str = "batch") -> np.random.Generator:
    """The random numbers of one training step: a pure function of (seed, stream, step)."""
    return np.random.default_rng([seed, step, int.from_bytes(stream.encode()[:8].ljust(8, b"\0"), "little")])


def epoch_batch(seed: int, step: int, pool_size: int, batch_size: int) -> torch.Tensor:
    """Indexes into a fixed pool for one step: each epoch walks its own seeded permutation of the pool."""
    per_epoch = max(1, pool_size // batch_size)
    order = step_rng(seed, step // per_epoch, "epoch").permutation(pool_size)
    start = (step % per_epoch) * batch_size
    return torch.from_numpy(order[start:start + batch_size])


def to_pixels(images_uint8: torch.Tensor) -> torch.Tensor:
    """[N, S, S, 3] uint8 pool images -> [N, 3, S, S] float in [0, 1] (what the model's towers take)."""
    return images_uint8.permute(0, 3, 1, 2).float() / 255.0


def parallel_map(function: Callable, items: Sequence, workers: int | None = None, desc: str = "") -> list:
    """``[function(x) for x in items]`` in worker processes (generators are CPU-bound Python), in order.

    Spawned, not forked: a fork of a process that already ran torch threads can hang.
    """
    from tqdm.auto import tqdm

    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    if workers <= 1 or len(items) < 32:
        return [function(x) for x in tqdm(items, desc=desc, leave=False)]
    chunk = max(1, len(items) // (workers * 16))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(function, items, chunksize=chunk), total=len(items), desc=desc, leave=False))


# ============================================================================ the trainer
def make_trainer(out: Path, recipe: Recipe, callbacks: Sequence[L.Callback] = (), progress: bool = True) -> L.Trainer:
    """A CPU-friendly trainer: bf16 autocast, CSV log under ``out/logs``, ``last.ckpt`` for resuming."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0,
                                  every_n_train_steps=max(1, min(recipe.val_every, recipe.steps)))
    from ..checkpoint_io import AtomicCheckpointIO

    return L.Trainer(max_steps=recipe.steps, max_epochs=1, precision=recipe.precision, accelerator="auto",
                     plugins=[AtomicCheckpointIO()],  # last.ckpt replaced by rename: a kill keeps the previous one
                     devices=1, gradient_clip_val=recipe.grad_clip, logger=CSVLogger(out, name="logs", version=""),
                     callbacks=[checkpoints, *callbacks], enable_progress_bar=progress, enable_model_summary=False,
                     log_every_n_steps=10, num_sanity_val_steps=0, limit_val_batches=0,
                     deterministic=False)


def last_checkpoint(out: Path) -> Path:
    """Where a run in ``out`` keeps the checkpoint it resumes from."""
    return out / "checkpoints" / "last.ckpt"


def fit_resumable(trainer: L.Trainer, module: L.LightningModule, data: StepDataModule, out: Path) -> bool:
    """Fit, continuing from ``out/checkpoints/last.ckpt`` when one exists. Returns True if it resumed."""
    from ..run_folder import check_resume

    last = last_checkpoint(out)
    if last.is_file():  # intact, and trained with this very recipe (hyper-parameters), else refused
        check_resume(last, dict(module.hparams), fresh_hint=f"delete {out} to pretrain afresh, or use another --out")
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None)
    return last.is_file()


# ============================================================================ export, checksums, cards
def tensor_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor in name order: equal iff bit-identical."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stored_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The part's tensors as they are stored: floating tensors in ``STORE_DTYPE``."""
    return {name: (t.detach().to(STORE_DTYPE) if t.is_floating_point() else t.detach()).contiguous()
            for name, t in module.state_dict().items()}


def rounded_to_storage(module: nn.Module) -> nn.Module:
    """Round the module's weights through the storage dtype, so evaluation sees what ships."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(STORE_DTYPE).to(tensor.dtype))
    return module


def export_part(module: nn.Module, path: Path) -> dict[str, Any]:
    """Write the part to ``path`` (safetensors, bf16, atomically); return its size and checksums."""
    from safetensors.torch import save as save_bytes

    state = stored_state(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = save_bytes(state, metadata={"format": "pt"})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))
    return {"file": path.name, "bytes": path.stat().st_size, "file_sha256": file_sha256(path),
            "tensor_sha256": tensor_checksum(state), "dtype": str(STORE_DTYPE).replace("torch.", ""),
            "parameters": sum(t.numel() for t in state.values())}


def write_card(folder: Path, part: str, card: dict[str, Any], markdown: str) -> None:
    write_json_atomic(folder / f"{part}.json", card)
    write_text_atomic(folder / f"{part}.md", markdown)


def read_card(folder: Path, part: str) -> dict[str, Any]:
    path = folder / f"{part}.json"
    if not path.is_file():
        raise FoundationError(f"no model card {path}: make the part with `dsvl-lab pretrain {part} --preset "
                              f"dsvl-{folder.name}-hybrid --out runs/{part} --ship`")
    return json.loads(path.read_text())


def ship(out: Path, part: str, size: str, root: Path = FOUNDATION_DIR) -> Path:
    """Copy a finished run's weights and card into the foundation folder (each file atomically)."""
    target = root / size
    target.mkdir(parents=True, exist_ok=True)
    for name in (f"{part}.safetensors", f"{part}_text.safetensors", f"{part}.json", f"{part}.md", f"{part}_curve.png"):
        source = out / name
        if source.is_file():
            atomic_write(target / name, lambda tmp, s=source: shutil.copyfile(s, tmp))
    write_index(root)
    return target


class Stopwatch:
    """Wall time of the phases of a run (pool, training, evaluation), for the model card."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, phase: str):
        watch = self

        class _Phase:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.times[phase] = round(watch.times.get(phase, 0.0) + time.perf_counter() - self.start, 1)

        return _Phase()

    @property
    def total(self) -> float:
        return round(sum(self.times.values()), 1)


def machine_line() -> str:
    import platform

    return f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}"


def read_metrics(out: str | Path) -> list[dict[str, float]]:
    """A run's CSV log (``out/logs/metrics.csv``) as rows of floats, empty cells dropped; [] if there is none."""
    import csv

    path = Path(out) / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{key: float(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(handle)]


def curve_rows(out: Path) -> list[dict[str, float]]:
    """The learning-curve rows logged as ``curve/*`` in the CSV log (one row per evaluation)."""
    rows = []
    for row in read_metrics(out):
        values = {k.split("/", 1)[1]: v for k, v in row.items() if k.startswith("curve/")}
        if values:
            values["step"] = row["step"]
            rows.append(values)
    return rows


def plot_curve(rows: list[dict[str, float]], keys: Sequence[str], path: Path, title: str) -> None:
    """A learning curve as PNG (one panel per metric)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in rows)]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)


def markdown_table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])


def card_markdown(card: dict[str, Any], what: str, quality_lines: list[str]) -> str:
    """The human model card: what it is, data, recipe, time, quality, files, how to reproduce."""
    recipe = card["recipe"]
    rows = [("preset size", card["size"]), ("parameters kept", f"{card['export']['parameters']:,}"),
            ("steps x batch", f"{recipe['steps']} x {recipe['batch_size']}"),
            ("peak lr / warm-up", f"{recipe['lr']} / {recipe['warmup_steps']} steps"),
            ("precision", recipe["precision"]), ("seed", str(recipe["seed"])),
            ("wall time", ", ".join(f"{k} {v:.0f} s" for k, v in card["wall_time_s"].items())
             + f" (total {card['wall_time_total_s'] / 60:.1f} min)"),
            ("machine", card["machine"]),
            ("file", f"`{card['export']['file']}` ({card['export']['bytes'] / 1e6:.1f} MB, {card['export']['dtype']})"),
            ("tensor sha256", f"`{card['export']['tensor_sha256']}`"),
            ("file sha256", f"`{card['export']['file_sha256']}`")]
    extra = "".join(f"| {k} | {v} |\n" for k, v in recipe.get("extra", {}).items())
    return (f"# {card['title']}\n\n{what}\n\n## Data\n{card['data']}\n\n## Recipe and cost\n"
            f"{markdown_table(rows)}\n{extra}\n## Quality (measured on the stored bf16 weights)\n"
            + "\n".join(f"- {line}" for line in quality_lines)
            + f"\n\n![learning curve]({card['part']}_curve.png)\n\n## Reproduce\n```\n{card['command']}\n```\n"
            f"A run stopped part-way resumes from `OUT/checkpoints/last.ckpt` when the same command is run again.\n")


def load_part_weights(module: nn.Module, path: Path, expected: dict[str, Any] | None = None) -> None:
    """Load a shipped part into ``module`` (exact names and shapes), checking the recorded checksum."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FoundationError(f"foundation weights {path} are missing; make them with `dsvl-lab pretrain "
                              f"{path.stem} --preset dsvl-{path.parent.name}-hybrid --out runs/{path.stem} --ship`")
    state = load_file(str(path))
    if expected is not None and tensor_checksum(state) != expected["tensor_sha256"]:
        raise FoundationError(f"{path} does not match the checksum in its model card ({path.stem}.json): the file "
                              f"was altered or belongs to another run; restore it (git checkout) or re-ship the run")
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        raise FoundationError(f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                              f"misshapen {misshapen[:5]}; was it made for another size?")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def log_curve(trainer: L.Trainer, name: str, value: float) -> None:
    """One learning-curve point, written to the logger at this exact step (not smoothed or repeated)."""
    if trainer.logger is not None:
        trainer.logger.log_metrics({name: float(value)}, step=trainer.global_step)


def headline(card: dict[str, Any]) -> str:
    """The card's quality figure in one line, for the index table."""
    f = card["figures"]
    if card["part"] == "lm":
        return (f"perplexity {f['perplexity']:.0f} vs unigram {f['unigram_perplexity']:.0f} ({f['unigram_ratio']:.1f}x); "
                f"cloze {f['cloze_accuracy']:.2f} (chance {f['cloze_chance']:.2f})")
    if card["part"] == "siglip":
        return f"zero-shot retrieval top-1 {f['top1']:.2f} among 100 (chance 0.01)"
    return f"texture probe mIoU SAM {f['sam_miou']:.2f} vs SigLIP {f['siglip_miou']:.2f} ({f['ratio']:.1f}x)"


def write_index(root: Path = FOUNDATION_DIR) -> Path:
    """``root/README.md``: one row per shipped part, made from the cards (so it never goes stale)."""
    rows = []
    for size in SIZES:
        for part in PARTS:
            path = root / size / f"{part}.json"
            if path.is_file():
                card = json.loads(path.read_text())
                rows.append(f"| [{size}/{part}]({size}/{part}.md) | `{card['submodule']}` | "
                            f"{card['recipe']['steps']} x {card['recipe']['batch_size']} | "
                            f"{card['wall_time_total_s'] / 60:.1f} | {card['export']['bytes'] / 1e6:.1f} | {headline(card)} |")
    text = ("# Foundation weights of the miniature presets\n\n"
            "Made by `dsvl-lab pretrain lm|siglip|sam` on this repository's own data (see each model card for the "
            "data, recipe, learning curve and the command that reproduces it). Loaded by "
            "`DSVLModel.from_foundation(preset)`, which checks each file against the checksum in its card. "
            "Stored in bf16; every figure below was measured on the stored bf16 weights. This table is rewritten "
            "from the cards whenever a part is shipped.\n\n"
            "| part | fills | steps x batch | minutes (2-core CPU) | MB | quality |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    return write_text_atomic(root / "README.md", text)
