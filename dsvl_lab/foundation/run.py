"""``pretrain(part, preset, out)``: one Lightning run, its evaluation, the export and the model card.

Every part follows the same path: build the pools, fit (resuming from ``out/checkpoints/last.ckpt``
if a previous run was stopped), round the weights to bf16 as they will ship, measure the quality
figures on held-out data, write ``out/<part>.safetensors`` and the card, and optionally copy them
into ``data_samples/foundation/<size>/`` (``ship=True``).
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..artifacts import read_card, write_card
from ..harness import fit_resumable, last_checkpoint, make_trainer, resume_point
from ..model import DSVLModel
from ..model.sam import SAMEncoder
from ..model.siglip import SigLIPViT
from ..processor import DSVLProcessor
from ..run_folder import owned
from . import lm as lm_part
from . import sam as sam_part
from . import siglip as siglip_part
from .card import Stopwatch, card_markdown, machine_line, part_card
from .curves import curve_rows, plot_curve
from .recipe import FOUNDATION_DIR, PARTS, FoundationError, Recipe, reference_config, size_of
from .shipping import export_part, load_part_weights, rounded_to_storage, ship

RECIPES = {"lm": lm_part.RECIPES, "siglip": siglip_part.RECIPES, "sam": sam_part.RECIPES}
LM_BARS = {"unigram_ratio": 3.0, "cloze_points_above_chance": 20.0}
SIGLIP_BAR = 0.5
SAM_BAR = 2.0


def recipe_for(part: str, size: str, smoke: bool = False, **overrides: Any) -> Recipe:
    if part not in RECIPES:
        raise FoundationError(f"unknown part {part!r}; expected one of {sorted(RECIPES)}")
    recipe = RECIPES[part][size]
    if smoke:
        recipe = recipe.smoke()
    bad = sorted(set(overrides) - {f.name for f in dataclasses.fields(Recipe)})
    if bad:
        raise FoundationError(f"unknown recipe option(s) {bad}")
    for key in ("steps", "batch_size"):
        if key in overrides and int(overrides[key]) < 1:
            raise FoundationError(f"{key} must be at least 1, got {overrides[key]}")
    if "lr" in overrides and not float(overrides["lr"]) > 0:
        raise FoundationError(f"lr must be positive, got {overrides['lr']}")
    recipe = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    if recipe.warmup_steps >= recipe.steps:
        recipe = dataclasses.replace(recipe, warmup_steps=max(1, recipe.steps // 10))
    return recipe


def earlier_wall_times(out: Path, part: str, recipe: Recipe) -> dict[str, float]:
    """Phase times of the card an earlier invocation of the same run (same recipe) left in ``out``, else none."""
    card = read_card(out, part)
    if card is None:
        return {}
    same_recipe = card.get("recipe") == json.loads(json.dumps(dataclasses.asdict(recipe)))  # tuples -> lists
    return dict(card.get("wall_time_s", {})) if same_recipe else {}


def pretrain(part: str, preset: str, out: str | Path, smoke: bool = False, ship_to: Path | None = None,
             progress: bool = True, command: str | None = None, callbacks: tuple = (),
             **overrides: Any) -> dict[str, Any]:
    """Run one part's pretraining end to end; returns its model card (also written to ``out``).

    ``callbacks`` are extra Lightning callbacks for the run (loggers of your own, early stops).
    ``out`` is owned by this process meanwhile (``dsvl_lab.run_folder.owned``).
    """
    with owned(out, command):
        return pretrain_in(part, preset, out, smoke, ship_to, progress, command, callbacks, **overrides)


def pretrain_in(part: str, preset: str, out: str | Path, smoke: bool, ship_to: Path | None, progress: bool,
                command: str | None, callbacks: tuple, **overrides: Any) -> dict[str, Any]:
    size = size_of(preset)
    recipe = recipe_for(part, size, smoke, **overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = reference_config(size)
    processor = DSVLProcessor.from_config(config)
    watch = Stopwatch()
    # Running the command again on a finished or interrupted run resumes it (and re-measures): the card
    # then counts the earlier invocations' time too, not only this one's (shipping a finished run used to
    # record the minute or so of re-measuring as the part's pretraining time).
    if last_checkpoint(out).is_file():  # a resume, not a fresh start over an old card
        watch.times.update(earlier_wall_times(out, part, recipe))
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    runner = {"lm": _run_lm, "siglip": _run_siglip, "sam": _run_sam}[part]
    module, figures, quality, data_text, what = runner(config, processor, recipe, out, watch, progress,
                                                       tuple(callbacks))
    export = export_part(getattr(module, SHIPPED_ATTRIBUTE[part]), out / f"{part}.safetensors")
    if part == "siglip":  # the text side, kept only to re-measure retrieval (see siglip.ContrastiveSide)
        figures["text_export"] = export_part(siglip_part.ContrastiveSide(module), out / "siglip_text.safetensors")
    rows = curve_rows(out)
    plot_curve(rows, [k for k in (rows[-1] if rows else {}) if k != "step"], out / f"{part}_curve.png",
               f"{part} pretraining, {size}")
    card = {"title": f"dsvl-{size} foundation {part}", "part": part, "size": size, "submodule": PARTS[part],
            "smoke": smoke, "recipe": dataclasses.asdict(recipe), "data": data_text, "figures": figures,
            "wall_time_s": watch.times, "wall_time_total_s": watch.total, "machine": machine_line(),
            "command": command or f"dsvl-lab pretrain {part} --preset {preset} --out {shlex.quote(str(out))}",
            "export": export, "learning_curve": rows}
    write_card(out, part, card, card_markdown(card, what, quality))
    if ship_to is not None:
        if smoke:
            raise FoundationError("a --smoke run is not shipped: it proves the command runs, its weights are untrained")
        ship(out, part, size, ship_to)
    return card


# Which attribute of each part's LightningModule is the part that ships (the rest is thrown away).
SHIPPED_ATTRIBUTE = {"lm": "language_model", "siglip": "vision", "sam": "sam"}


def train_part(out: Path, recipe: Recipe, module: L.LightningModule, data: L.LightningDataModule,
               callbacks: list, watch: Stopwatch, progress: bool) -> bool:
    """Fit a part's module with the harness: resumes from ``out``'s ``last.ckpt`` when this very recipe wrote it.

    Foundation runs log to CSV only, validate nowhere (their curves are callbacks) and write
    ``last.ckpt`` at every curve point. Returns True if it resumed.
    """
    trainer = make_trainer(out, recipe.steps, callbacks, checkpoint_every=recipe.val_every, progress=progress,
                           tensorboard=False, precision=recipe.precision, gradient_clip_val=recipe.grad_clip,
                           limit_val_batches=0, deterministic=False)
    with watch("train"):
        resume = resume_point(out, dict(module.hparams),
                              fresh_hint=f"delete {out} to pretrain afresh, or use another --out")
        return fit_resumable(trainer, module, data, resume)


# ============================================================================ the three parts
def _run_lm(config, processor, recipe, out, watch, progress, callbacks):
    data = lm_part.TextWindows(recipe, processor)
    with watch("data"):
        data.setup("fit")
    module = lm_part.LMPretraining(dataclasses.asdict(config.llm), dataclasses.asdict(recipe))
    train_part(out, recipe, module, data, [lm_part.HeldOutPerplexity(processor, recipe.val_every), *callbacks],
               watch, progress)
    rounded_to_storage(module.language_model).eval()
    with watch("evaluate"):
        figures = lm_part.evaluate(module.language_model, processor, n_cloze=40 if recipe.steps < 50 else 200)
    quality = [
        f"held-out perplexity {figures['perplexity']:.1f} vs unigram {figures['unigram_perplexity']:.1f}: "
        f"{figures['unigram_ratio']:.2f}x better (bar: {LM_BARS['unigram_ratio']}x)",
        f"word cloze {figures['cloze_accuracy']:.3f} vs chance {figures['cloze_chance']:.2f}: "
        f"{figures['cloze_points_above_chance']:+.1f} points (bar: +{LM_BARS['cloze_points_above_chance']:.0f}); "
        f"{figures['cloze_items']} items",
        f"sentence-ending cloze (HellaSwag-like, harder) {figures['ending_accuracy']:.3f} vs chance "
        f"{figures['cloze_chance']:.2f}",
    ]
    data_text = (f"The training split of the text corpus (`dsvl_lab.data.corpus`, Python's documentation) plus the "
                 f"texts of {recipe.extra['task_samples']} train-seed samples per task family and detail: "
                 f"{len(data.tokens):,} tokens, read as random windows of {recipe.extra['seq_len']} tokens "
                 f"(BOS first). The held-out split ({figures['heldout_tokens']:,} tokens) is only evaluated.")
    what = ("The miniature LLaMA-style language model (`language_model` of the DSVLModel), standing in for "
            "DeepSeek-LLM. Next-token pretraining; shared by the -siglip, -sam and -hybrid presets of this size.")
    return module, figures, quality, data_text, what


def _run_siglip(config, processor, recipe, out, watch, progress, callbacks):
    world, low = config.sam.image_size, config.siglip.image_size
    data = siglip_part.CaptionPairs(recipe, processor, world, low)
    n_heldout = siglip_part.RETRIEVAL_CANDIDATES * (1 if recipe.steps < 50 else siglip_part.RETRIEVAL_GROUPS)
    with watch("data"):
        data.setup("fit")
        heldout = siglip_part.heldout_pairs(n_heldout, world, low)
    module = siglip_part.SigLIPPretraining(dataclasses.asdict(config.siglip), config.llm.vocab_size,
                                           dataclasses.asdict(recipe))
    curve_pairs = {k: v[:siglip_part.RETRIEVAL_CANDIDATES] for k, v in heldout.items()}
    train_part(out, recipe, module, data, [siglip_part.RetrievalCurve(processor, curve_pairs, recipe.val_every),
                                           *callbacks], watch, progress)
    rounded_to_storage(module)
    with watch("evaluate"):
        figures = siglip_part.retrieval_accuracy(module, processor, heldout)
        figures.update(siglip_part.reading_accuracy(module, processor, heldout))
    families = ", ".join(f"{k[5:]} {v:.2f}" for k, v in figures.items() if k.startswith("top1_"))
    quality = [f"zero-shot image -> caption retrieval among {siglip_part.RETRIEVAL_CANDIDATES} held-out coarse "
               f"candidates: top-1 {figures['top1']:.3f} (chance {figures['chance']:.2f}; bar {SIGLIP_BAR}) over "
               f"{figures['images']} images", f"per family: {families}",
               "reading, zero-shot against text views (chance 0.125 each): "
               f"the OCR word {figures['read_ocr_word']:.2f}, "
               f"the left button label of a screen {figures['read_screen_left_label']:.2f}"]
    share = recipe.extra.get("text_view_share", 0.0)
    views = (f" For {share:.0%} of them (seeded) the caption is replaced by its text view, the quoted text alone "
             f"(`Text: \"music\"`) or, for a chart, its leading series (`Tallest bar: yellow`), so that matching it "
             f"needs reading or comparing; equal captions in a batch count as matches."
             if share else "")
    data_text = (f"{recipe.extra['train_pool']:,} coarse task samples (train seeds, families in turn), drawn at "
                 f"{world} px and shrunk to {low} px with the hybrid model's own antialiased resize; their captions."
                 f"{views} Retrieval is measured on {n_heldout} samples from evaluation seeds (never trained on).")
    what = ("The miniature SigLIP image tower (`vision_model.low`), trained with SigLIP's sigmoid pairwise loss "
            f"against a {recipe.extra['text_depth']}-layer text tower. The text tower and the mean-pool projection "
            "head are thrown away, as DeepSeek-VL drops SigLIP's `attn_pool` head.")
    return module, figures, quality, data_text, what


def _run_sam(config, processor, recipe, out, watch, progress, callbacks):
    size, extra = config.sam.image_size, recipe.extra
    data = sam_part.DenseImages(recipe, size)
    with watch("data"):
        data.setup("fit")
        heldout = sam_part.heldout_fine(extra["probe_eval_pool"], size)
        probe_train = sam_part.build_dense(
            sam_part.dense_jobs(range(10**6, 10**6 + extra["probe_train_pool"]), size, fine_share=1.0), "probe pool")
    module = sam_part.SAMPretraining(dataclasses.asdict(config.sam), config.token_grid, dataclasses.asdict(recipe))
    curve = {k: v[:128] for k, v in heldout.items()}
    train_part(out, recipe, module, data, [sam_part.TextureCurve(curve, recipe.val_every), *callbacks], watch, progress)
    rounded_to_storage(module.sam)
    siglip, source = shipped_siglip(config, out)
    with watch("evaluate"):
        figures = sam_part.probe_comparison(module.sam, siglip, probe_train, heldout,
                                            steps=30 if recipe.steps < 50 else 600)
        figures["decoder_miou"] = sam_part.decoder_miou(module, heldout)
    figures["siglip_source"] = source
    quality = [f"dense texture probe on held-out fine images (mIoU over horizontal / vertical / checker cells): "
               f"SAM {figures['sam_miou']:.3f} vs SigLIP upsampled {figures['siglip_miou']:.3f} = "
               f"{figures['ratio']:.1f}x (bar: {SAM_BAR}x); SigLIP weights: {source}",
               f"the pretraining decoder itself: held-out mIoU {figures['decoder_miou']:.3f}"]
    data_text = (f"{extra['train_pool']:,} task samples (train seeds, families in turn, "
                 f"{extra['fine_share']:.0%} fine) "
                 f"at {size} px with per-pixel texture labels recorded by the generators, on cells of "
                 f"{sam_part.CELL} x {sam_part.CELL} px; random horizontal flips. The probe trains on "
                 f"{extra['probe_train_pool']} other fine train-seed images and is scored on "
                 f"{extra['probe_eval_pool']} fine images from evaluation seeds.")
    what = ("The miniature SAM encoder (`vision_model.high`: ViTDet blocks, neck, HD branch and the two stride-2 "
            "downsampling convs), trained densely to label the 1-pixel textures of the task world. The light "
            "decoder (LayerNorm + linear per token, pixel-shuffled) is thrown away.")
    return module, figures, quality, data_text, what


def shipped_siglip(config, out: Path):
    """The SigLIP tower the probe compares with: a sibling run's, else the shipped one, else random (said so)."""
    siglip = SigLIPViT(config.siglip)
    size = size_of(config)
    for path in (out.parent / f"siglip-{size}" / "siglip.safetensors", FOUNDATION_DIR / size / "siglip.safetensors"):
        if path.is_file():
            load_part_weights(siglip, path)
            return siglip, str(path)
    return siglip, "random initialisation (no pretrained SigLIP found; run `dsvl-lab pretrain siglip` first)"


# ============================================================================ loading shipped parts
def load_shipped(module: torch.nn.Module, part: str, size: str, root: str | Path | None = None,
                 text_side: bool = False) -> dict[str, Any]:
    """Load a shipped part into ``module`` and return its card; ``text_side`` loads SigLIP's text side instead.

    The file is checked against the checksum its card records; smoke results are refused.
    """
    folder = Path(root) if root is not None else FOUNDATION_DIR / size
    card = part_card(folder, part)
    if card.get("smoke"):
        raise FoundationError(f"{folder / part}.safetensors comes from a --smoke run (untrained); ship a full run")
    if text_side:
        load_part_weights(module, folder / f"{part}_text.safetensors", card["figures"]["text_export"])
    else:
        load_part_weights(module, folder / f"{part}.safetensors", card["export"])
    return card


def from_foundation(preset: str, root: str | Path | None = None, parts: tuple[str, ...] | None = None):
    """A DSVLModel whose LLM and encoders start from the shipped foundation weights, aligner fresh.

    This is the starting point of stage 1, as the paper starts from DeepSeek-LLM, SigLIP and SAM.
    Every file is checked against the checksum in its model card.
    """
    size = size_of(preset)  # first: building a real-size preset only to refuse it would take minutes and GBs
    model = DSVLModel.from_name(preset)
    present = {"lm": True, "siglip": model.config.siglip is not None, "sam": model.config.sam is not None}
    model.foundation_parts = {}
    for part in parts or tuple(p for p in PARTS if present[p]):
        card = load_shipped(model.get_submodule(PARTS[part]), part, size, root)
        model.foundation_parts[part] = card["export"]["tensor_sha256"]
    return model


def shipped_encoders(size: str, root: str | Path | None = None):
    """The shipped (SAM encoder, SigLIP tower) of a size, as the VL model holds them."""
    config = reference_config(size)
    encoder, low = SAMEncoder(config.sam, config.token_grid), SigLIPViT(config.siglip)
    load_shipped(encoder, "sam", size, root)
    load_shipped(low, "siglip", size, root)
    return encoder, low


def shipped_contrastive_siglip(size: str, root: str | Path | None = None) -> siglip_part.SigLIPPretraining:
    """The whole SigLIP pretraining module (tower and the shipped text side), for re-measuring retrieval."""
    config = reference_config(size)
    recipe = part_card(Path(root) if root is not None else FOUNDATION_DIR / size, "siglip")["recipe"]
    module = siglip_part.SigLIPPretraining(dataclasses.asdict(config.siglip), config.llm.vocab_size, recipe)
    load_shipped(module.vision, "siglip", size, root)
    load_shipped(siglip_part.ContrastiveSide(module), "siglip", size, root, text_side=True)
    return module.eval()
