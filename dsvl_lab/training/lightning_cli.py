"""``dsvl-lab fit``: one stage from composable YAML pieces, through Lightning's own LightningCLI.

    dsvl-lab fit --config configs/model/dsvl-tiny-hybrid.yaml --config configs/stage/stage2_joint.yaml \\
                 --config configs/data/no-warmup.yaml --config configs/trainer/cpu.yaml \\
                 --model.start runs/demo/stage1_adaptor --trainer.default_root_dir runs/fit-stage2

Each ``--config`` adds a piece (later pieces override earlier ones, key by key): ``model/`` picks
the preset, ``stage/`` the whole StageSpec, ``data/`` changes the stage's mixture, ``trainer/``
the hardware (CPU, 2-process DDP, FSDP on GPUs). Any key can also be set on the command line
(``--model.stage.learning_rate 1e-4``). ``dsvl-lab fit --print_config ...`` shows the merged result.

The run writes into ``trainer.default_root_dir``: logs, ``checkpoints/last.ckpt`` (resume with
``--ckpt_path last``) and ``model/``, the hand-off for the next stage, exactly as the pipeline does.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from ..checkpoint_io import AtomicCheckpointIO
from ..data.datamodule import DSVLDataModule
from ..errors import RunFolderError
from ..harness import keep_last, last_checkpoint, run_loggers
from ..run_folder import check_resume, owned
from .handoff import CARD
from .module import DSVLLitModule
from .run import stage_callbacks, start_key
from .spec import StageSpec, as_stage_spec


class StageDataModule(DSVLDataModule):
    """The data of a stage, read from the same preset and stage as the model (linked by the CLI)."""

    def __init__(self, preset: str = "dsvl-tiny-hybrid", stage: StageSpec | str = "stage1_adaptor",
                 scale: str = "mini", num_workers: int | str = "auto", val_batches: int = 2) -> None:
        spec = as_stage_spec(stage, scale)
        super().__init__(preset, spec.data, total_steps=spec.steps, num_workers=num_workers, val_batches=val_batches)


class StageCLI(LightningCLI):
    """LightningCLI with the data linked to the model's stage and our stage callbacks added."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.preset", "data.preset")
        parser.link_arguments("model.stage", "data.stage")
        parser.link_arguments("model.scale", "data.scale")
        parser.add_argument("--eval_samples", type=int, default=20, help="held-out questions per family and detail")
        parser.add_argument("--eval_every", type=int, default=0, help="evaluate every N steps (0: at the end only)")
        parser.add_argument("--checkpoint_every", type=int, default=50, help="write last.ckpt every N steps")
        parser.add_argument("--fresh", type=bool, default=False,
                            help="train afresh in a folder that already holds this stage "
                                 "(deletes its checkpoints/ and model/)")

    def instantiate_trainer(self, **kwargs):
        """Stage length from the stage, and the stage callbacks (audit, guard, evaluation, hand-off)."""
        module: DSVLLitModule = self.model
        out = Path(self._get(self.config, "trainer.default_root_dir") or "runs/fit")
        extra = stage_callbacks(out, module.spec, self._get(self.config, "eval_every"),
                                self._get(self.config, "eval_samples"))
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), *extra.values(),
                               keep_last(out, self._get(self.config, "checkpoint_every"), module.spec.steps)]
        # a kill keeps the previous last.ckpt
        kwargs["plugins"] = [*(kwargs.get("plugins") or []), AtomicCheckpointIO()]
        if self._get(self.config, "trainer.logger") in (None, True):  # CSV always, TensorBoard when installed
            kwargs["logger"] = run_loggers(out)
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.max_steps in (-1, None):  # the stage says how long it is, unless the trainer piece does
            trainer.fit_loop.epoch_loop.max_steps = module.spec.steps
        return trainer


    # ------------------------------------------------------------------ the run folder
    def root(self) -> Path:
        return Path(self._get(self.config, "trainer.default_root_dir") or "runs/fit")

    def before_fit(self) -> None:
        """Own the run folder, and never train silently over a stage it already holds."""
        global FIT_FOLDER
        FIT_FOLDER = str(self.root())
        HELD.enter_context(owned(self.root()))
        ckpt_path = self._get(self.config, "ckpt_path")
        if self._get(self.config, "fresh"):
            start_afresh(self.root())
        elif ckpt_path is None:
            refuse_to_retrain(self.root())
        if ckpt_path is not None:
            checkpoint = last_checkpoint(self.root()) if ckpt_path == "last" else Path(ckpt_path)
            if checkpoint.is_file():
                module: DSVLLitModule = self.model
                check_resume(checkpoint, dict(module.hparams), fresh_hint=FRESH_HINT, normalise={"start": start_key})

    def after_fit(self) -> None:
        HELD.close()


HELD = ExitStack()  # the run folder's lock, released after fit, or by main() when fit fails
FIT_FOLDER: str | None = None  # the folder being trained, for dsvl-lab fit's Ctrl-C line
FRESH_HINT = ("pass --fresh true to train afresh (deletes its checkpoints/ and model/), "
              "or choose another --trainer.default_root_dir")


def refuse_to_retrain(root: Path) -> None:
    """A folder with a finished stage or a checkpoint is resumed on request only (--ckpt_path last)."""
    finished, last = root / "model" / CARD, last_checkpoint(root)
    if finished.is_file() or last.is_file():
        held = "a finished stage (model/)" if finished.is_file() else "a checkpoint (checkpoints/last.ckpt)"
        raise RunFolderError(f"already holds {held}; pass --ckpt_path last to resume it, or {FRESH_HINT}", source=root)


def start_afresh(root: Path) -> None:
    import shutil

    for name in ("checkpoints", "model"):
        if (root / name).exists():
            shutil.rmtree(root / name)
            print(f"{root / name}: deleted (--fresh true)")


def main(args: list[str] | None = None, description: str = "", example: str = "") -> None:
    import argparse
    import warnings

    from jsonargparse import DefaultHelpFormatter

    class KeepLayout(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """jsonargparse's help, with the description and example kept as written."""

    examples = "".join(f"\n  {line}" for line in example.splitlines())
    parser_kwargs = {"fit": {"description": description, "epilog": f"Examples:{examples}",
                             "formatter_class": KeepLayout}}
    # We pass args on purpose (dsvl-lab parsed `fit` off the command line); LightningCLI warns about it.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    with HELD:
        StageCLI(DSVLLitModule, StageDataModule, args=args, save_config_kwargs={"overwrite": True},
                 parser_kwargs=parser_kwargs,
                 trainer_defaults={"max_steps": -1, "max_epochs": 1, "use_distributed_sampler": False,
                                   "num_sanity_val_steps": 0, "enable_model_summary": False})
