"""What each training stage reads: sample formats, the per-stage data spec, and batches by step.

Paper (section 3.2, docs/deepseek_vl_facts.md sections 4.1-4.3):
- stage 1 (adaptor warm-up) reads image-caption and document-OCR pairs, no language-only data;
- stage 2 (joint pre-training) reads a language-heavy mixture (70% text) of interleaved
  image-text, captions, charts, OCR and QA, plus "a minimal proportion" of SFT data;
- stage 3 (SFT) reads conversations in the chat template, about half of them text-only, with the
  loss on the assistant's answers only.

How pre-training samples were formatted in the original is not documented (docs/deepseek_vl_facts.md 2.7, issue #56:
UNVERIFIED). We use a plain format for stages 1-2 — ``BOS <image tokens> caption EOS`` and
``BOS <image tokens> Question: q Answer: a EOS`` with the loss on the caption / answer — and the
processor's chat template for instruction data. The share of instruction data in stage 2 is also
UNVERIFIED; we choose 10% of the multimodal samples.

Batches are a pure function of (seed, step): see ``mixing.py``. That makes a resumed run see
exactly the batches an uninterrupted run would have seen, with any number of loader workers.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..config import is_int, is_number, shown
from ..constants import IGNORE_INDEX
from ..errors import InputError
from ..processor import DSVLProcessor, EncodedSample, ProcessorError
from .corpus import train_texts
from .fresh_text import fresh_train_texts
from .mixing import WARMUP_KINDS, ModalityPlan, WarmupSchedule, draw_seed
from .jsonl import DataError
from .jsonl.images import image_header_size
from .jsonl.lines import to_sample
from .sample_cache import SampleKey, cached_sample
from .sources import ImageRecord, SourceMixture, image_record, source_specs
from .sources.packing import packed_tokens
from .tasks import FAMILIES

EVAL_SEED_BASE = 1 << 62  # training task seeds are drawn below 2**62, evaluation seeds at and above it
MAX_TASK_IMAGE_SIZE = 4096  # pixels a side; the largest preset draws at 1024, and 4096 is 48 MB an image
IMAGE_FORMATS = ("caption", "qa", "chat")
TEXT_FORMATS = ("plain", "chat")
# Where the language-only samples come from: "corpus", the train split of the foundation corpus
# (dsvl_lab.data.corpus, which the foundation LM was pretrained on), or "fresh", the train split of
# third-party docstrings it never read (dsvl_lab.data.fresh_text). The evaluation reads neither.
TEXT_SOURCES = ("corpus", "fresh")
# Fields added after stage cards and sweep run names were first written: serialised (to_dict) only
# when they differ from this default, so existing cards, resume checks and run hashes still match.
OMITTED_AT_DEFAULT = {"text_source": "corpus", "sources": [], "on_bad_sample": "raise"}
ON_BAD_SAMPLE = ("raise", "skip")
MAX_BAD_IN_A_ROW = 1000  # bad rows skipped for one sample before the source is declared broken


@dataclass
class StageData:
    """The data side of one stage: mixture, formats, lengths, seed.

    ``language_ratio`` is the share of language-only draws after the warm-up; ``warmup_steps`` and
    ``warmup_kind`` ("linear", "step" or "none") shape the modality warm-up from 1.0 down to it;
    ``group_by_modality`` makes each batch all-text or all-image. ``image_formats`` weights the
    multimodal sample formats; ``fine_share`` is the share of fine-detail task samples.
    ``text_source`` picks the language-only text: ``"corpus"`` (the foundation corpus's train
    split) or ``"fresh"`` (text the foundation LM never read; see ``TEXT_SOURCES``).
    """

    name: str = "stage2_joint"
    families: tuple[str, ...] = ("chart", "ocr", "doc", "screen", "scene")
    fine_share: float = 0.5
    language_ratio: float = 0.7
    warmup_steps: int = 0
    warmup_kind: str = "linear"
    warmup_stairs: int = 4
    group_by_modality: bool = True
    image_formats: dict[str, float] = field(default_factory=lambda: {"caption": 0.4, "qa": 0.5, "chat": 0.1})
    text_format: str = "plain"
    task_image_size: int | None = None  # None: see world_image_size()
    seq_len: int = 256
    batch_size: int = 16
    seed: int = 0
    text_source: str = "corpus"
    sources: tuple = ()  # SourceSpecs (sources/spec.py); empty: the world and the built-in text, as always
    on_bad_sample: str = "raise"  # a bad row of a user source: "raise" (stop, naming file:line) or "skip" (count)

    def __post_init__(self) -> None:
        # Messages name the key as a stage config spells it (stage.data.<field>); types are checked
        # before values, so a YAML string or list is named instead of failing a comparison.
        def bad(key: str, problem: str) -> None:
            raise InputError(problem, key=f"stage.data.{key}")

        if not isinstance(self.families, (list, tuple)) or not self.families:
            bad("families", f"must be a non-empty list of task families, got {shown(self.families)}")
        self.families = tuple(self.families)  # YAML gives lists
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            bad("families", f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
        if not isinstance(self.image_formats, dict):
            bad("image_formats", f"must map formats to weights, got {shown(self.image_formats)}")
        unknown = [f for f in self.image_formats if f not in IMAGE_FORMATS]
        if unknown:
            bad("image_formats", f"unknown formats {unknown}; choose from {IMAGE_FORMATS}")
        weights = list(self.image_formats.values())
        if not (weights and all(is_number(w) and w >= 0 for w in weights) and sum(weights) > 0):
            bad("image_formats", f"weights must be numbers >= 0, not all 0, got {shown(self.image_formats)}")
        if self.text_format not in TEXT_FORMATS:
            bad("text_format", f"must be one of {TEXT_FORMATS}, got {shown(self.text_format)}")
        if not (isinstance(self.text_source, str) and self.text_source in TEXT_SOURCES):
            bad("text_source", f"must be one of {TEXT_SOURCES}, got {shown(self.text_source)}")
        if self.warmup_kind not in WARMUP_KINDS:
            bad("warmup_kind", f"must be one of {WARMUP_KINDS}, got {shown(self.warmup_kind)}")
        if not isinstance(self.group_by_modality, bool):
            bad("group_by_modality", f"must be true or false, got {shown(self.group_by_modality)}")
        if not isinstance(self.name, str):
            bad("name", f"must be a string, got {shown(self.name)}")
        for key in ("fine_share", "language_ratio"):
            value = getattr(self, key)
            if not (is_number(value) and 0.0 <= value <= 1.0):
                bad(key, f"must be in [0, 1], got {shown(value)}")
        for key, low in (("batch_size", 1), ("seq_len", 2), ("warmup_steps", 0), ("warmup_stairs", 1), ("seed", 0)):
            value = getattr(self, key)
            if not (is_int(value) and value >= low):
                bad(key, f"must be an integer >= {low}, got {shown(value)}")
        size = self.task_image_size
        if size is not None and not (is_int(size) and 64 <= size <= MAX_TASK_IMAGE_SIZE):
            bad("task_image_size",
                f"must be null or an integer in 64..{MAX_TASK_IMAGE_SIZE} (pixels), got {shown(size)}")
        self.sources = source_specs(self.sources)
        if self.on_bad_sample not in ON_BAD_SAMPLE:
            bad("on_bad_sample", f"must be one of {ON_BAD_SAMPLE}, got {shown(self.on_bad_sample)}")
        self.schedule  # validates the warm-up

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data, leaving out ``OMITTED_AT_DEFAULT`` fields at their default."""
        data = dataclasses.asdict(self)
        data["sources"] = [source.to_dict() for source in self.sources]  # a list: as JSON and YAML give it back
        for key, default in OMITTED_AT_DEFAULT.items():
            if data[key] == default:
                del data[key]
        return data

    def training_texts(self) -> list[str]:
        """The train split of ``text_source``: the only text the stage's language samples are cut from."""
        if self.text_source == "fresh":
            return fresh_train_texts()
        return train_texts()

    @property
    def uses_world(self) -> bool:
        """Whether image draws may come from the procedural world (no sources, or a ``world`` source)."""
        return not self.sources or any(source.kind == "world" for source in self.sources)

    @property
    def uses_built_in_text(self) -> bool:
        """Whether text draws may come from ``text_source`` (no sources, or a ``corpus`` source)."""
        return not self.sources or any(source.kind == "corpus" for source in self.sources)

    @property
    def schedule(self) -> WarmupSchedule:
        return WarmupSchedule(self.language_ratio, self.warmup_steps, self.warmup_kind, self.warmup_stairs)

    def plan(self, world_size: int = 1) -> ModalityPlan:
        """The modality of every draw; under DDP a step's draws span all ranks' batches."""
        return ModalityPlan(self.schedule, self.seed, self.group_by_modality, self.batch_size * world_size)


# The paper's three stages as data presets (miniature lengths; the mixture follows the paper).
STAGE_DATA_PRESETS: dict[str, StageData] = {
    "stage1_adaptor": StageData(name="stage1_adaptor", language_ratio=0.0, image_formats={"caption": 1.0},
                                group_by_modality=True),
    "stage2_joint": StageData(name="stage2_joint", language_ratio=0.7, warmup_steps=200),
    "stage3_sft": StageData(name="stage3_sft", language_ratio=0.479, image_formats={"chat": 1.0},
                            text_format="chat"),
}


# ============================================================================ sample formats
QA_PROMPT = " Question: {question} Answer:"  # the plain QA format of stages 1-2 (our choice, UNVERIFIED)


def plain_example(processor: DSVLProcessor, prompt: str, target: str | None, image=None) -> EncodedSample:
    """BOS [image] prompt target EOS, with the loss on ``target`` and EOS only.

    ``target=None`` gives the prompt alone, ready for generation.
    """
    prompt_ids = processor.encode_segment((processor.image_tag if image is not None else "") + prompt)
    target_ids = [] if target is None else processor.encode_segment(target) + [processor.eos_token_id]
    input_ids = [processor.bos_token_id] + prompt_ids + target_ids
    labels = [IGNORE_INDEX] * (1 + len(prompt_ids)) + target_ids
    return EncodedSample(input_ids, labels, [] if image is None else [image])


def caption_example(processor: DSVLProcessor, sample) -> EncodedSample:
    return plain_example(processor, "", " " + sample.caption, sample.image)


def qa_example(processor: DSVLProcessor, sample, turn: int = 0, answer: str | None = None) -> EncodedSample:
    """Question ``turn`` of a task sample in the plain format, answered by its answer (or ``answer``)."""
    qa = sample.qa[turn]
    reply = qa.answer if answer is None else answer
    return plain_example(processor, QA_PROMPT.format(question=qa.question), " " + reply, sample.image)


def chat_conversation(sample) -> list[dict]:
    """All QA turns of a task sample as a conversation, the image in the first user turn."""
    conversation: list[dict] = []
    for index, qa in enumerate(sample.qa):
        user = {"role": "user", "content": qa.question}
        if index == 0:
            user = {"role": "user", "content": "<image_placeholder>" + qa.question, "images": [sample.image]}
        conversation += [user, {"role": "assistant", "content": qa.answer}]
    return conversation


def chat_example(processor: DSVLProcessor, sample) -> EncodedSample:
    return processor.encode_conversation(chat_conversation(sample))


def text_plain_example(processor: DSVLProcessor, tokens: np.ndarray) -> EncodedSample:
    """A window of the training text: every token supervised (language modelling)."""
    ids = [processor.bos_token_id] + tokens.tolist()
    return EncodedSample(ids, [IGNORE_INDEX] + tokens.tolist(), [])


def text_chat_example(processor: DSVLProcessor, tokens: np.ndarray) -> EncodedSample:
    """Text-only SFT: continue a passage of the training text (stage 3's language-only share)."""
    half = len(tokens) // 2
    prefix = processor.decode(tokens[:half].tolist())
    continuation = processor.decode(tokens[half:].tolist()).strip()
    conversation = [{"role": "user", "content": f"Continue the text: {prefix}"},
                    {"role": "assistant", "content": continuation}]
    return processor.encode_conversation(conversation)


def sample_example(processor: DSVLProcessor, sample, data: StageData, rng: random.Random,
                   forms: tuple[str, ...] = IMAGE_FORMATS) -> EncodedSample:
    """A task or user sample in one of the stage's image formats, drawn with ``rng`` by their weights.

    ``forms`` limits the draw to the formats the sample can fill (a user row may have no caption).
    """
    weighted = {form: weight for form, weight in data.image_formats.items() if form in forms and weight > 0}
    weighted = weighted or {form: 1.0 for form in forms}  # the stage wants formats this row cannot give
    form = rng.choices(list(weighted), list(weighted.values()))[0]
    if form == "caption":
        return caption_example(processor, sample)
    if form == "qa":
        return qa_example(processor, sample, rng.randrange(len(sample.qa)))
    return chat_example(processor, sample)


def record_example(processor: DSVLProcessor, record, image, data: StageData, rng: random.Random) -> EncodedSample:
    """A checked user row (``sources.ImageRecord``) with its decoded image -> token ids.

    A row with a conversation (LLaVA's, or a sample file's) trains as that conversation, in the chat
    template, whatever the stage; a row with a caption and/or questions takes the stage's image
    formats, as a world sample does.
    """
    if record.conversation is not None:
        return processor.encode_conversation(with_image(record.conversation, image))
    forms = (("caption",) if record.caption else ()) + (("qa", "chat") if record.qa else ())
    sample = to_sample({"caption": record.caption or "", "qa": record.qa}, image)
    return sample_example(processor, sample, data, rng, forms)


def with_image(conversation: list[dict], image) -> list[dict]:
    """The conversation with ``image`` attached to the turn holding its placeholder (the processor's form)."""
    turns, attached = [], False
    for turn in conversation:
        turn = {"role": turn["role"], "content": turn["content"]}
        if not attached and "<image_placeholder>" in turn["content"]:
            turn["images"], attached = [image], True
        turns.append(turn)
    return turns


# ============================================================================ sources
# Said when a bad row stops a run (on_bad_sample="raise"); "skip" counts the same message instead.
BAD_ROW_HINT = "or skip bad rows with stage.data.on_bad_sample: skip (they are counted, with file:line)"


class TextStream:
    """The training split of the corpus as one token stream; samples are windows of it."""

    def __init__(self, processor: DSVLProcessor, texts: list[str]) -> None:
        ids: list[int] = []
        for text in texts:
            ids += processor.encode_text(text, add_bos=False, add_eos=True)
        self.tokens = np.asarray(ids, dtype=np.int32)

    def window(self, seed: int, length: int) -> np.ndarray:
        if len(self.tokens) <= length:
            raise ValueError(f"the text corpus has {len(self.tokens)} tokens, fewer than one sample of {length}")
        start = seed % (len(self.tokens) - length)
        return self.tokens[start:start + length]


def world_image_size(config) -> int:
    """The size the task images are drawn at: the high-res size when SAM is used.

    A SigLIP-only model sees the same world through its own (4x smaller) eyes: the processor
    resizes the image down, so single- vs hybrid-encoder comparisons read the same pictures.
    """
    if config.sam is not None:
        return config.sam.image_size
    return max(64, 4 * config.siglip.image_size)


def task_choice(data: StageData, seed: int, rng: random.Random | None = None) -> tuple[str, str]:
    """The family and detail level of a training draw, chosen from ``seed`` (or from ``rng``, advanced)."""
    rng = rng or random.Random(seed)
    family = rng.choice(data.families)
    detail = "fine" if rng.random() < data.fine_share else "coarse"
    return family, detail


def task_sample(data: StageData, seed: int, image_size: int, rng: random.Random | None = None):
    """One task sample for a training draw: family and detail level chosen from ``seed``.

    Read from the shared sample cache when ``DSVL_LAB_SAMPLE_CACHE`` names one (``sample_cache.py``):
    the same pixels and text as rendering it, in a fraction of the time.
    """
    family, detail = task_choice(data, seed, rng)
    return cached_sample(family, seed, detail=detail, image_size=image_size)


def image_draw_keys(data: StageData, steps: int, image_size: int, world_size: int = 1) -> set[SampleKey]:
    """The task samples that ``steps`` training steps of ``data`` draw (all ranks' slots): what
    ``StageBatches`` renders, found without building a processor or a model (to pre-fill the cache)."""
    plan, width = data.plan(world_size), data.batch_size * world_size
    if not data.uses_world:
        return set()
    mixture = SourceMixture(data.sources, data.seed) if data.sources else None  # which draws the world serves
    keys = set()
    for step in range(steps):
        for slot, modality in enumerate(plan.step_modalities(step, width)):
            if modality == "image" and (mixture is None
                                        or mixture.choose("image", plan.sample_rank(step, slot, width)).built_in):
                seed = draw_seed(data.seed, step, slot, modality)
                family, detail = task_choice(data, seed)
                keys.add(SampleKey(family, detail, image_size, seed))
    return keys


def planned_counts(data: StageData, steps: int, world_size: int = 1) -> dict[str, dict[str, float]]:
    """What ``steps`` steps of ``data`` draw, from the plan alone (no sample is built): samples of
    each modality and of each source, with what the spec expects for comparison.

    ``{"drawn": {"text": n, "image": n, <source>: n, ...}, "expected": {...}}``; expected counts
    follow the warm-up (``ModalityPlan.expected_text``) and each source's share of its modality.
    The same choice functions as ``StageBatches``, so a run's logged counts equal these.
    """
    plan, width = data.plan(world_size), data.batch_size * world_size
    mixture = SourceMixture(data.sources, data.seed) if data.sources else None
    drawn: dict[str, float] = {"text": 0, "image": 0}
    for step in range(steps):
        for slot, modality in enumerate(plan.step_modalities(step, width)):
            drawn[modality] += 1
            if mixture is not None:
                label = mixture.choose(modality, plan.sample_rank(step, slot, width)).label
                drawn[label] = drawn.get(label, 0) + 1
    draws = steps if data.group_by_modality else steps * width
    text = plan.expected_text(draws) * (width if data.group_by_modality else 1)
    expected = {"text": text, "image": steps * width - text}
    for modality in ("text", "image"):
        for label, share in (mixture.shares(modality).items() if mixture is not None else ()):
            expected[label] = expected[modality] * share
    return {"drawn": drawn, "expected": expected}


# ============================================================================ batches by step
class StageBatches(Dataset):
    """Map-style dataset whose item ``step`` is the whole batch of that training step.

    Each batch carries ``n_text`` and ``n_image`` (samples of each modality), so a run can log and
    prove its mixture.
    """

    def __init__(self, data: StageData, processor: DSVLProcessor, text: TextStream | None, total_steps: int,
                 task_image_size: int | None = None, rank: int = 0, world_size: int = 1, split: str = "train",
                 mixture: SourceMixture | None = None) -> None:
        self.data = data
        # Under DDP every rank builds its own slice (slots rank*B .. rank*B+B-1) of the same global step,
        # so all ranks agree on the step's modality and a 1-process run is the rank-0 slice of nothing else.
        self.rank, self.world_size = rank, world_size
        self.processor = processor
        self.task_image_size = data.task_image_size or task_image_size or max(64, processor.image_size)
        self.text = text
        self.total_steps = total_steps
        self.plan = data.plan(world_size)
        # User sources (stage.data.sources): indexed once here; None keeps the world + built-in text path.
        self.split = split
        self.mixture = mixture or (SourceMixture(data.sources, data.seed, split) if data.sources else None)
        for source in self.mixture.sources if self.mixture else ():
            source.rows  # index the files here, once: loader workers inherit the index instead of rebuilding it
        self._bad_now: list[dict] = []  # rows skipped while building the current batch
        self._counts_now: dict[str, int] = {}
        if data.language_ratio > 0 and text is None and data.uses_built_in_text:
            raise ValueError(f"stage {data.name!r} has language_ratio {data.language_ratio} but no text corpus")

    def __len__(self) -> int:
        return self.total_steps

    def __getitem__(self, step: int) -> dict[str, Any]:
        size = self.data.batch_size
        first = self.rank * size
        modalities = self.plan.step_modalities(step, size * self.world_size)[first:first + size]
        self._bad_now, self._counts_now = [], {}
        samples = [self.example(step, first + i, modality) for i, modality in enumerate(modalities)]
        batch = self.collate(samples)
        batch["n_text"] = modalities.count("text")
        batch["n_image"] = modalities.count("image")
        batch["step"] = step
        if self.mixture is not None:  # what each source gave, and the rows skipped on the way
            batch["source_counts"] = dict(self._counts_now)
            batch["bad_samples"] = list(self._bad_now)
        return batch

    def example(self, step: int, slot: int, modality: str) -> EncodedSample:
        seed = draw_seed(self.data.seed, step, slot, modality)
        try:
            return self._example(seed, modality, step, slot)
        except InputError:
            raise  # a bad row under on_bad_sample="raise": its message already names file:line
        except Exception as error:  # say which sample, so a long run never dies anonymously
            raise RuntimeError(f"stage {self.data.name!r}: building the {modality} sample of step {step}, slot {slot} "
                               f"(seed {seed}) failed: {error}") from error

    def draw_source(self, modality: str, step: int, slot: int):
        """The user source this sample reads (sources/mixture.py), or None for the world / built-in text;
        counted in the batch's ``source_counts``."""
        if self.mixture is None:
            return None
        rank = self.plan.sample_rank(step, slot, self.data.batch_size * self.world_size)
        source = self.mixture.choose(modality, rank)
        self._counts_now[source.label] = self._counts_now.get(source.label, 0) + 1
        return None if source.built_in else source

    def _example(self, seed: int, modality: str, step: int = 0, slot: int = 0) -> EncodedSample:
        source = self.draw_source(modality, step, slot)
        if modality == "text":
            if source is None:
                tokens = self.text.window(seed, self.data.seq_len - 1)
            else:
                tokens = packed_tokens(source, seed, self.data.seq_len - 1, self.split, self._tokenize, self.bad_row)
            if self.data.text_format == "chat":
                return self._truncate(text_chat_example(self.processor, tokens))
            return text_plain_example(self.processor, tokens)
        if source is not None:
            return self._truncate(self._user_image_example(source, seed))
        rng = random.Random(seed)
        sample = task_sample(self.data, seed, self.task_image_size, rng)
        return self._truncate(sample_example(self.processor, sample, self.data, rng))

    def _tokenize(self, text: str) -> list[int]:
        return self.processor.encode_text(text, add_bos=False, add_eos=True)

    def _user_image_example(self, source, seed: int) -> EncodedSample:
        """A drawn row of a user image source; bad rows are skipped (counted) or raised, per on_bad_sample."""
        rng = random.Random(seed)
        for _ in range(MAX_BAD_IN_A_ROW):
            row = source.pick(rng, self.split)
            try:
                record = image_record(*source.rows.get(row), source.image_folder, source.spec.allow_outside_paths)
                image = self._decode(record)
                return record_example(self.processor, record, image, self.data, rng)
            except DataError as error:
                self.bad_row(error)
        raise DataError(f"{MAX_BAD_IN_A_ROW} bad rows in a row: is this the right file and image_folder?",
                        source=str(source.spec.path), key="stage.data.sources")

    def _decode(self, record: ImageRecord):
        """The record's pixels, through the processor's safe loader (size limit before decoding)."""
        limit = self.processor.max_image_pixels
        try:
            if isinstance(record.image, bytes):
                return self.processor.load_image(record.image)
            image_header_size(record.image, limit)  # "missing image" / "image too large" before decoding
            return self.processor.load_image(record.image)
        except DataError as error:
            raise DataError(error.problem, source=record.where, key="image", reason=error.reason) from None
        except ProcessorError as error:
            raise DataError(f"unreadable image: {error.problem}", source=record.where, key="image",
                            reason="unreadable image") from None

    def bad_row(self, error: DataError) -> None:
        """``on_bad_sample="raise"``: stop with the row's file:line; "skip": count it and go on."""
        if self.data.on_bad_sample == "raise":
            raise DataError(f"{error.problem}; {BAD_ROW_HINT}", source=error.source, key=error.key,
                            reason=error.reason) from None
        self._bad_now.append({"where": error.source, "reason": error.reason,
                              "message": DataError(error.problem, source=error.source, key=error.key).format()})

    def _truncate(self, encoded: EncodedSample) -> EncodedSample:
        """Cut text beyond seq_len; image tokens come first and are never cut."""
        limit = self.data.seq_len
        n_image = encoded.input_ids.count(self.processor.image_token_id)
        if len(encoded.input_ids) > limit:
            if n_image and encoded.input_ids[:limit].count(self.processor.image_token_id) != n_image:
                raise ValueError(f"seq_len {limit} is too short for {n_image} image tokens; raise seq_len")
            encoded = EncodedSample(encoded.input_ids[:limit], encoded.labels[:limit], encoded.images)
        return encoded

    def collate(self, samples: list[EncodedSample]) -> dict[str, Any]:
        batch = self.processor.pad_left(samples)
        batch["pixel_values"] = self.processor.process_images([image for s in samples for image in s.images])
        return batch


def eval_seed(index: int) -> int:
    """Seeds of the fixed evaluation sets: disjoint from every training draw by construction."""
    return EVAL_SEED_BASE + index
