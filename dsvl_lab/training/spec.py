"""A training stage as data: ``StageSpec``, the paper's three stages and their CPU miniatures.

Paper (section 3.2, Table 4; docs/deepseek_vl_facts.md sections 4.1-4.2):

============  =====================  ===========================  ===================================
stage         trains                 data                         lr / schedule / warm-up / steps
============  =====================  ===========================  ===================================
stage 1       the VL adaptor         captions + document OCR      1e-3, cosine, 128, 15000
stage 2       adaptor + LLM          70% text, modality warm-up   4.2e-5 (7B; 3e-5 1.3B), step, 2000
stage 3       LLM + adaptor + SigLIP chat SFT, 47.9% text-only    2e-5, cosine, 256, 10000
============  =====================  ===========================  ===================================

Every stage uses AdamW (0.9, 0.95), weight decay 0 and gradient clipping 1.0. The original authors
released no training code (DeepSeek-VL issues #6, #9), so a stage here is a plain dataclass that a
YAML file or a notebook can write, validated before any training starts.

Parameter groups are named by the module path of the component they cover:

- ``vision_model.low``: SigLIP (the low-resolution encoder);
- ``vision_model.high``: SAM's image encoder (patch embedding, blocks);
- ``vision_model.high.neck``: SAM's neck, HD neck and the two stride-2 downsampling convs. The paper
  counts them as part of the adaptor, and the original code trains them whenever it trains the
  adaptor (``freeze_high=False`` rule). That they train in stages 1-2 is implied, not stated:
  UNVERIFIED; we train them with the adaptor in every stage;
- ``aligner``: the MLP adaptor (original: ``aligner``; paper: "VL adaptor");
- ``language_model``: the LLM.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..config import did_you_mean, is_int, shown, type_name
from ..constants import PROMPT_FORMATS
from ..data.stage_data import STAGE_DATA_PRESETS, StageData
from ..errors import InputError
from ..harness.schedule import KINDS, lr_factor
from ..yaml_files import read_yaml

# The component groups a stage can train, each with the module prefixes it covers inside DSVLModel.
GROUPS: dict[str, tuple[str, ...]] = {
    "vision_model.low": ("vision_model.low.",),
    "vision_model.high": ("vision_model.high.patch_embed.", "vision_model.high.pos_embed", "vision_model.high.blocks."),
    "vision_model.high.neck": ("vision_model.high.neck.", "vision_model.high.neck_hd.",
                               "vision_model.high.downsamples.", "vision_model.high.hd_alpha_downsamples"),
    "aligner": ("aligner.",),
    "language_model": ("language_model.",),
}
SCHEDULES = KINDS  # the harness's schedule kinds: cosine, step, constant
STARTS = ("foundation", "random")  # or the name of the stage whose output this stage continues
STAGE_NAMES = ("stage1_adaptor", "stage2_joint", "stage3_sft")
# Fields added after cards and sweep hashes were first written: left out of to_dict at their default,
# so every spec written before them keeps its hash (as StageData's OMITTED_AT_DEFAULT).
SPEC_OMITTED_AT_DEFAULT = {"language_every": 0}


class StageConfigError(InputError):
    """A bad stage setting, found before training starts; the message names the key."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        super().__init__(problem, source=source, key=key)


@dataclass
class StageSpec:
    """One training stage: what trains, how fast, on what data, starting from where.

    Args:
        name: the stage's name (``stage1_adaptor``, ``stage2_joint``, ``stage3_sft`` or your own).
        trainable: the parameter groups that train (keys of ``GROUPS``); everything else is frozen.
        learning_rate: the peak learning rate of every trainable group...
        group_learning_rates: ...unless a group has its own here.
        schedule: ``cosine`` (to ``min_lr_ratio`` of the peak), ``step`` (times ``step_gamma`` at each
            fraction of the run in ``step_milestones``) or ``constant``; all after a linear warm-up.
        warmup_steps: linear learning-rate warm-up (not the modality warm-up, which is ``data``'s).
        steps: optimizer steps of the stage.
        betas, weight_decay, eps, grad_clip: AdamW and clipping.
        data: the stage's data mixture (language ratio, modality warm-up, formats, batch size, seq_len).
        starts_from: ``foundation`` (the shipped pretrained parts), ``random``, or the name of the
            stage whose checkpoint this one continues: the hand-off checks it.
        prompt_format: how the stage's evaluation asks questions: ``plain`` before SFT, ``chat`` after.
        language_every: the LLM's held-out perplexity (``lang/perplexity``, the measure of
            ``dsvl_lab.data.lm_eval.language_retention``) at step 0 and every this many steps; 0 = never.
            It changes no weight: it only draws the language curve of the language studies.
    """

    name: str
    trainable: tuple[str, ...]
    learning_rate: float
    steps: int
    data: StageData
    starts_from: str = "foundation"
    group_learning_rates: dict[str, float] = field(default_factory=dict)
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # cosine floor: not given by the paper (UNVERIFIED)
    # DeepSeek-LLM's step schedule; the VL paper gives none (UNVERIFIED)
    step_milestones: tuple[float, ...] = (0.8, 0.9)
    step_gamma: float = 0.316
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    eps: float = 1e-8  # not given by the paper (UNVERIFIED): PyTorch's default
    grad_clip: float = 1.0
    prompt_format: str = "plain"
    language_every: int = 0

    def __post_init__(self) -> None:
        # YAML gives lists and mappings; anything else would fail inside tuple() or StageData() unnamed.
        for key in ("trainable", "betas", "step_milestones"):
            check(isinstance(getattr(self, key), (list, tuple)), f"stage.{key}",
                  f"must be a list, got {shown(getattr(self, key))}")
        check(isinstance(self.group_learning_rates, dict), "stage.group_learning_rates",
              f"must be a mapping of group: learning rate, got {shown(self.group_learning_rates)}")
        self.trainable = tuple(self.trainable)
        self.betas = tuple(self.betas)
        self.step_milestones = tuple(self.step_milestones)
        if isinstance(self.data, dict):  # from YAML / JSON
            check_keys(self.data, StageData, "stage.data")
            self.data = StageData(**self.data)
        self.validate()

    @classmethod
    def from_dict(cls, data, source=None) -> "StageSpec":
        """A stage from plain data (a stage YAML's ``model.stage``); problems name the key and ``source``."""
        try:
            check(isinstance(data, dict), "stage", f"must be a mapping of StageSpec fields, got {type_name(data)}")
            check_keys(data, cls, "stage")
            for key in ("name", "trainable", "learning_rate", "steps", "data"):
                check(key in data, f"stage.{key}", "missing: every stage sets it")
            return cls(**data)
        except InputError as error:
            raise error.at(source) from None

    @classmethod
    def load(cls, path) -> "StageSpec":
        """A stage from a YAML file: a ``configs/stage/`` piece (``model: stage: ...``) or the stage mapping itself.

        ``dsvl-lab fit`` reads the pieces through LightningCLI; this reader is for notebooks and checks,
        and names the file (and line) in every error.
        """
        data = read_yaml(path)
        if isinstance(data, dict) and "model" in data:  # a LightningCLI piece
            model = data["model"]
            if not (isinstance(model, dict) and "stage" in model):
                raise StageConfigError("model", "a stage piece holds model: stage: {...}", source=str(path))
            data = model["stage"]
        return cls.from_dict(data, source=path)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``StageConfigError`` naming the first bad key."""
        check(isinstance(self.name, str) and bool(self.name), "stage.name",
              f"must be a non-empty string, got {shown(self.name)}")
        check(len(self.trainable) > 0, "stage.trainable", "lists no parameter group: a stage must train something")
        for group in list(self.trainable) + list(self.group_learning_rates):
            if not (isinstance(group, str) and group in GROUPS):  # (the hint is worked out on failure only)
                raise StageConfigError("stage.trainable" if group in self.trainable else "stage.group_learning_rates",
                                       f"no parameter group {shown(group)}{did_you_mean(str(group), GROUPS)}; "
                                       f"groups are {', '.join(GROUPS)}")
        for group in self.group_learning_rates:
            check(group in self.trainable, "stage.group_learning_rates",
                  f"{group!r} has a learning rate but is not in stage.trainable")
        for key, value in [("stage.learning_rate", self.learning_rate),
                           *((f"stage.group_learning_rates.{g}", v) for g, v in self.group_learning_rates.items())]:
            check(is_number(value) and value > 0, key, f"must be a positive number, got {value!r}")
        check(self.schedule in SCHEDULES, "stage.schedule", f"must be one of {SCHEDULES}, got {self.schedule!r}")
        # is_int / is_number first: a YAML string or list must be named, not compared (a TypeError).
        check(is_int(self.steps) and self.steps >= 1, "stage.steps",
              f"must be an integer >= 1, got {shown(self.steps)}")
        check(is_int(self.warmup_steps) and 0 <= self.warmup_steps, "stage.warmup_steps",
              f"must be an integer >= 0, got {shown(self.warmup_steps)}")
        check(is_number(self.min_lr_ratio) and 0.0 <= self.min_lr_ratio <= 1.0, "stage.min_lr_ratio",
              f"must be in [0, 1], got {shown(self.min_lr_ratio)}")
        check(all(is_number(m) and 0.0 < m < 1.0 for m in self.step_milestones), "stage.step_milestones",
              f"must be fractions of the run in (0, 1), got {shown(self.step_milestones)}")
        check(is_number(self.step_gamma) and 0.0 < self.step_gamma <= 1.0, "stage.step_gamma",
              f"must be in (0, 1], got {shown(self.step_gamma)}")
        check(len(self.betas) == 2 and all(is_number(b) and 0.0 <= b < 1.0 for b in self.betas), "stage.betas",
              f"must be two numbers in [0, 1), got {shown(self.betas)}")
        check(is_number(self.weight_decay) and self.weight_decay >= 0, "stage.weight_decay",
              f"must be >= 0, got {shown(self.weight_decay)}")
        check(is_number(self.eps) and self.eps > 0, "stage.eps", f"must be > 0, got {shown(self.eps)}")
        check(is_number(self.grad_clip) and self.grad_clip >= 0, "stage.grad_clip",
              f"must be >= 0 (0 = no clipping), got {shown(self.grad_clip)}")
        check(self.starts_from in STARTS or self.starts_from in STAGE_NAMES, "stage.starts_from",
              f"must be one of {STARTS + STAGE_NAMES}, got {self.starts_from!r}")
        check(self.prompt_format in PROMPT_FORMATS, "stage.prompt_format",
              f"must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")
        check(is_int(self.language_every) and self.language_every >= 0, "stage.language_every",
              f"must be an integer >= 0 (0: no language curve), got {shown(self.language_every)}")
        # The mixture's own values (stage.data.language_ratio, ...) are checked by StageData when it is built.
        check(isinstance(self.data, StageData), "stage.data", "must be a StageData (or a mapping of its fields)")

    # ------------------------------------------------------------------ derived values
    def lr_of(self, group: str) -> float:
        return self.group_learning_rates.get(group, self.learning_rate)

    def schedule_shape(self) -> dict:
        """The stage's schedule as ``dsvl_lab.harness.lr_factor`` keywords (all but the run's length)."""
        return {"warmup_steps": self.warmup_steps, "kind": self.schedule, "floor": self.min_lr_ratio,
                "milestones": self.step_milestones, "gamma": self.step_gamma}

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier at optimizer step ``step`` (the harness's schedule; a Python float)."""
        return lr_factor(step, self.steps, **self.schedule_shape())

    def replace(self, **changes) -> "StageSpec":
        """A copy with fields changed; ``data`` may be a dict of StageData fields to change."""
        data = changes.pop("data", None)
        if isinstance(data, dict):
            changes["data"] = dataclasses.replace(self.data, **data)
        elif data is not None:
            changes["data"] = data
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain data for cards, resume checks and sweep hashes; ``data`` through ``StageData.to_dict``, which
        leaves out fields added later at their default, so specs written before them still match."""
        data = dataclasses.asdict(self)
        data["data"] = self.data.to_dict()
        for key, default in SPEC_OMITTED_AT_DEFAULT.items():
            if data[key] == default:
                del data[key]
        return data


def check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise StageConfigError(key, problem)


def check_keys(data: dict, section_class: type, prefix: str) -> None:
    """Every key is a field of ``section_class``; an unknown one is named with the closest field."""
    fields = [f.name for f in dataclasses.fields(section_class)]
    for key in data:
        if key not in fields:
            raise StageConfigError(f"{prefix}.{key}", f"unknown key{did_you_mean(str(key), fields)}; "
                                                      f"{section_class.__name__} keys are {', '.join(fields)}")


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ============================================================================ presets
ADAPTOR = ("aligner", "vision_model.high.neck")


def paper_stage(name: str, size: str = "7b") -> StageSpec:
    """A paper stage with Table 4's values (``size`` = "7b" or "1.3b"; they differ only in stage 2)."""
    data = STAGE_DATA_PRESETS
    specs = {
        "stage1_adaptor": StageSpec(
            "stage1_adaptor", ADAPTOR, 1e-3, 15000,
            dataclasses.replace(data["stage1_adaptor"], seq_len=512, batch_size=256),
            starts_from="foundation", schedule="cosine", warmup_steps=128),
        "stage2_joint": StageSpec(
            "stage2_joint", ADAPTOR + ("language_model",), 4.2e-5 if size == "7b" else 3e-5,
            42000 if size == "7b" else 96000,
            dataclasses.replace(data["stage2_joint"], seq_len=4096, batch_size=2304 if size == "7b" else 1024,
                                warmup_steps=2000),  # modality warm-up length: UNVERIFIED (we use the LR warm-up's)
            starts_from="stage1_adaptor", schedule="step", warmup_steps=2000),
        "stage3_sft": StageSpec(
            "stage3_sft", ADAPTOR + ("language_model", "vision_model.low"), 2e-5, 10000,
            dataclasses.replace(data["stage3_sft"], seq_len=4096, batch_size=256),
            starts_from="stage2_joint", schedule="cosine", warmup_steps=256, prompt_format="chat"),
    }
    if name not in specs:
        raise StageConfigError("stage", f"unknown stage {name!r}; choose one of {', '.join(STAGE_NAMES)}")
    if size not in ("7b", "1.3b"):
        raise StageConfigError("size", f"paper stages exist for '7b' and '1.3b', got {size!r}")
    return specs[name]


# The miniature recipe: the paper's structure (what trains, schedules, mixtures, warm-ups) with lengths
# and learning rates for a few CPU minutes on dsvl-tiny-*; the rates are ours, chosen by measurement
# (docs/lab_log.md, "Learning rates of the miniature stages").
MINI_STEPS = {"stage1_adaptor": 150, "stage2_joint": 400, "stage3_sft": 400}
# Stage 3's SigLIP tower trains at a tenth of the stage's rate: at the tiny LLM's raised rate it forgets
# its pretraining (docs/lab_log.md, "Stage 3's SigLIP tower").
MINI_SIGLIP_SFT_FACTOR = 0.1


def mini_stage(name: str, steps: int | None = None) -> StageSpec:
    """The CPU miniature of a paper stage (same trainable groups, mixture and schedule kinds)."""
    paper = paper_stage(name)
    steps = steps or MINI_STEPS[name]
    warmup = max(1, steps // 20)
    base = {"stage1_adaptor": 2e-3, "stage2_joint": 1e-3, "stage3_sft": 5e-4}[name]  # foundation LM: 2e-3
    data = dataclasses.replace(STAGE_DATA_PRESETS[name], batch_size=16, seq_len=256)
    if name == "stage2_joint":
        data = dataclasses.replace(data, warmup_steps=steps // 4)  # modality warm-up over the first quarter
    # The pretrained SigLIP tower trains slower wherever a stage trains it (in the paper's recipe: stage 3).
    groups = {"vision_model.low": base * MINI_SIGLIP_SFT_FACTOR} if "vision_model.low" in paper.trainable else {}
    return paper.replace(learning_rate=base, steps=steps, warmup_steps=warmup, data=data, group_learning_rates=groups)


def as_stage_spec(stage: StageSpec | str, scale: str = "mini") -> StageSpec:
    """A StageSpec as given, or the preset of that name at ``scale``."""
    return stage if isinstance(stage, StageSpec) else stage_spec(stage, scale)


def stage_spec(name: str, scale: str = "mini", steps: int | None = None) -> StageSpec:
    """A stage preset: ``scale`` is ``mini`` (CPU minutes), ``paper-7b`` or ``paper-1.3b``."""
    if scale == "mini":
        if name not in STAGE_NAMES:
            raise StageConfigError("stage", f"unknown stage {name!r}; choose one of {', '.join(STAGE_NAMES)}")
        return mini_stage(name, steps)
    if scale in ("paper-7b", "paper-1.3b"):
        spec = paper_stage(name, scale.removeprefix("paper-"))
        return spec.replace(steps=steps) if steps else spec
    raise StageConfigError("scale", f"unknown scale {scale!r}; choose 'mini', 'paper-7b' or 'paper-1.3b'")


# ============================================================================ YAML pieces for dsvl-lab fit
SCALE_SUFFIXES = {"mini": "", "paper-7b": "-paper-7b", "paper-1.3b": "-paper-1.3b"}


def stage_yaml(name: str, scale: str = "mini") -> str:
    """The ``configs/stage/`` piece of a stage preset (``python -m dsvl_lab.training.spec`` rewrites them)."""
    import json

    import yaml

    spec = json.loads(json.dumps(stage_spec(name, scale).to_dict()))  # tuples -> lists
    return (f"# {name} ({scale}): written by `python -m dsvl_lab.training.spec` from stage_spec({name!r}, {scale!r});\n"
            f"# tests/test_training.py checks that the two agree.\n"
            + yaml.safe_dump({"model": {"stage": spec}}, sort_keys=False))


if __name__ == "__main__":
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs" / "stage"
    for stage in STAGE_NAMES:
        for scale, suffix in SCALE_SUFFIXES.items():
            (folder / f"{stage}{suffix}.yaml").write_text(stage_yaml(stage, scale))
            print(f"wrote {folder / f'{stage}{suffix}.yaml'}")


def merge_pieces(base: dict, piece: dict) -> dict:
    """``piece`` over ``base`` key by key, as LightningCLI merges ``--config`` files: mappings merge, values replace."""
    merged = dict(base)
    for key, value in piece.items():
        merged[key] = merge_pieces(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def load_pieces(paths) -> tuple[str | None, StageSpec]:
    """The preset and stage that ``dsvl-lab fit --config A --config B ...`` would train, read without Lightning.

    For costing a run before it starts (``dsvl-lab flops --config ...``): the ``model:`` sections of
    the pieces merged in order; the stage must be a whole spec (a ``configs/stage/`` piece) by the end.
    """
    model: dict = {}
    for path in paths:
        data = read_yaml(path)
        if not (isinstance(data, dict) and isinstance(data.get("model", {}), dict)):
            raise StageConfigError("model", "a fit piece is a mapping with a model: section", source=str(path))
        model = merge_pieces(model, data.get("model", {}))
    stage = model.get("stage")
    if isinstance(stage, str):
        return model.get("preset"), stage_spec(stage, model.get("scale", "mini"))
    if not isinstance(stage, dict):
        raise StageConfigError("model.stage", "none of the pieces gives the stage: add a configs/stage/ piece")
    return model.get("preset"), StageSpec.from_dict(stage, source=", ".join(str(p) for p in paths))
