"""DSVLDataModule: batches by step, modality counts, exact resume through a Lightning checkpoint."""
from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import pytest
import torch

from dsvl_lab.data.datamodule import DSVLDataModule, MixtureLogger


def fingerprint(batch: dict) -> str:
    digest = hashlib.sha1(batch["input_ids"].numpy().tobytes())
    digest.update(batch["pixel_values"].numpy().tobytes())
    return digest.hexdigest()[:12]


def datamodule(total_steps=12, **overrides) -> DSVLDataModule:
    settings = dict(batch_size=4, language_ratio=0.5, warmup_steps=6, seq_len=128)
    settings.update(overrides)
    dm = DSVLDataModule("dsvl-micro-hybrid", "stage2_joint", total_steps=total_steps, val_batches=1, **settings)
    dm.setup("fit")
    return dm


def test_batches_are_grouped_counted_and_shaped():
    dm = datamodule()
    config = dm.config
    for step in range(8):
        batch = dm.train_batches[step]
        assert batch["n_text"] + batch["n_image"] == 4
        assert batch["n_text"] in (0, 4)  # modality grouping: one modality per batch
        images = int((batch["input_ids"] == config.image_token_id).sum())
        assert images == batch["pixel_values"].shape[0] * config.num_image_tokens
        assert batch["labels"].shape == batch["input_ids"].shape
        assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_a_batch_depends_only_on_its_step_not_on_workers_or_order():
    dm = datamodule()
    forward = [fingerprint(dm.train_batches[s]) for s in range(6)]
    backward = [fingerprint(dm.train_batches[s]) for s in reversed(range(6))][::-1]
    assert forward == backward
    dm.num_workers = 2
    assert [fingerprint(b) for b in dm.train_dataloader()][:6] == forward


def test_stage_presets_follow_the_paper():
    s1 = DSVLDataModule("dsvl-micro-hybrid", "stage1_adaptor", total_steps=4, batch_size=2)
    s1.setup("fit")
    assert all(s1.train_batches[s]["n_text"] == 0 for s in range(4))  # stage 1: image-text pairs only
    s3 = DSVLDataModule("dsvl-micro-siglip", "stage3_sft", total_steps=4, batch_size=2, seq_len=128)
    s3.setup("fit")
    batch = next(b for b in (s3.train_batches[s] for s in range(8)) if b["n_image"])
    supervised = batch["labels"][batch["labels"] != -100]
    assert len(supervised) > 0 and (supervised != s3.config.image_token_id).all()


class Recorder(L.LightningModule):
    """Trains one scalar and records which batches it saw."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[str] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(fingerprint(batch))
        return (self.weight - batch["input_ids"].float().mean() / 1000) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(dm, tmp_path, max_steps, ckpt_path=None, every=None, logger=False):
    model = Recorder()
    callbacks = [MixtureLogger()]
    if every:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=every,
                                                             save_top_k=-1, filename="{step}"))
    trainer = L.Trainer(max_steps=max_steps, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=callbacks, accelerator="cpu",
                        default_root_dir=tmp_path, enable_checkpointing=bool(every))
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen


def test_resume_sees_exactly_the_batches_of_an_uninterrupted_run(tmp_path):
    uninterrupted = fit(datamodule(), tmp_path / "a", max_steps=10)
    first = fit(datamodule(), tmp_path / "b", max_steps=4, every=4)
    checkpoint = tmp_path / "b" / "step=4.ckpt"
    assert checkpoint.exists()
    dm = datamodule()
    resumed = fit(dm, tmp_path / "c", max_steps=10, ckpt_path=str(checkpoint))
    assert first + resumed == uninterrupted
    assert dm.next_step == 10
    assert dm.seen["text"] + dm.seen["image"] == 10 * 4


def test_counts_prove_the_mixture(tmp_path):
    dm = datamodule(total_steps=40, language_ratio=0.25, warmup_steps=0)
    logger = L.pytorch.loggers.CSVLogger(tmp_path, name="mix")
    fit(dm, tmp_path, max_steps=40, logger=logger)
    import csv

    rows = [r for r in csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")) if r.get("data/text_seen")]
    assert float(rows[-1]["data/text_seen"]) + float(rows[-1]["data/image_seen"]) == 160
    assert float(rows[-1]["data/language_share_target"]) == 0.25
    # 40 grouped batches of 4: the text share is a quarter, give or take one batch.
    assert dm.seen["text"] + dm.seen["image"] == 160
    assert abs(dm.language_share_seen() - 0.25) <= 4 / 160


def test_resuming_with_a_different_mixture_is_refused():
    dm = datamodule()
    state = dm.state_dict()
    other = datamodule(language_ratio=0.9)
    with pytest.raises(ValueError, match="language_ratio"):
        other.load_state_dict(state)
