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

from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from ..data.datamodule import DSVLDataModule
from .module import DSVLLitModule
from .spec import StageSpec, as_stage_spec


class StageDataModule(DSVLDataModule):
    """The data of a stage, read from the same preset and stage as the model (linked by the CLI)."""

    def __init__(self, preset: str = "dsvl-tiny-hybrid", stage: StageSpec | str = "stage1_adaptor",
                 scale: str = "mini", num_workers: int = 1, val_batches: int = 2) -> None:
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

    def instantiate_trainer(self, **kwargs):
        """Stage length from the stage, and the stage callbacks (audit, guard, evaluation, hand-off)."""
        from .run import stage_callbacks

        module: DSVLLitModule = self.model
        out = Path(self._get(self.config, "trainer.default_root_dir") or "runs/fit")
        extra = stage_callbacks(out, module.spec, self._get(self.config, "eval_every"),
                                self._get(self.config, "eval_samples"), self._get(self.config, "checkpoint_every"))
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + list(extra.values())
        if self._get(self.config, "trainer.logger") in (None, True):  # CSV always, TensorBoard when installed
            from .run import loggers_for

            kwargs["logger"] = loggers_for(out)
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.max_steps in (-1, None):  # the stage says how long it is, unless the trainer piece does
            trainer.fit_loop.epoch_loop.max_steps = module.spec.steps
        return trainer


def main(args: list[str] | None = None, description: str = "", example: str = "") -> None:
    import argparse
    import warnings

    from jsonargparse import DefaultHelpFormatter

    class KeepLayout(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """jsonargparse's help, with the description and example kept as written."""

    examples = "".join(f"\n  {line}" for line in example.splitlines())
    parser_kwargs = {"fit": {"description": description, "epilog": f"Examples:{examples}", "formatter_class": KeepLayout}}
    # We pass args on purpose (dsvl-lab parsed `fit` off the command line); LightningCLI warns about it.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    StageCLI(DSVLLitModule, StageDataModule, args=args, save_config_kwargs={"overwrite": True},
             parser_kwargs=parser_kwargs,
             trainer_defaults={"max_steps": -1, "max_epochs": 1, "use_distributed_sampler": False,
                               "num_sanity_val_steps": 0, "enable_model_summary": False})
