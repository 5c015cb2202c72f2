"""Task families: valid samples, determinism, clear errors, and a cheap leak check of the fine designs.

The full proof that fine answers need the high-res view is ``python -m dsvl_lab.data.detail_check``
(minutes; its table is in data_samples/README.md). Here we check the mechanism on single pairs:
two fine samples that differ only in the answer must look the same after the 4x downscale.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dsvl_lab.data.tasks import DETAILS, FAMILIES, QA, Sample, generate_sample, generate_samples
from dsvl_lab.model.vision import resize_antialiased


def low_res(image: Image.Image) -> torch.Tensor:
    """The SigLIP view the hybrid encoder makes: 4x smaller, antialiased bilinear, in 0..255."""
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    return resize_antialiased(pixels, image.size[0] // 4)[0] * 255


@pytest.mark.parametrize("detail", DETAILS)
@pytest.mark.parametrize("family", FAMILIES)
def test_valid_sample(family, detail):
    for seed in range(3):
        s = generate_sample(family, seed, detail=detail)
        assert isinstance(s, Sample) and (s.family, s.detail, s.seed) == (family, detail, seed)
        assert s.image.mode == "RGB" and s.image.size == (256, 256)
        assert isinstance(s.caption, str) and len(s.caption) > 20 and s.caption.endswith(".")
        assert len(s.qa) >= 1
        for qa in s.qa:
            assert isinstance(qa, QA) and qa.question.endswith("?") and qa.answer
            assert qa.answer in qa.options and len(set(qa.options)) == len(qa.options) >= 2
            assert qa.detail == detail  # a fine sample asks fine questions, a coarse one coarse questions
        # qa[0] is the family's signature question of this level: the same kind in every sample.
        assert s.qa[0].kind == generate_sample(family, seed + 100, detail=detail).qa[0].kind


@pytest.mark.parametrize("family", FAMILIES)
def test_other_image_sizes(family):
    for size in (64, 384):
        for detail in DETAILS:
            s = generate_sample(family, 1, detail=detail, image_size=size)
            assert s.image.size == (size, size) and s.image.mode == "RGB"


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic(family):
    for detail in DETAILS:
        a, b = generate_sample(family, 7, detail), generate_sample(family, 7, detail)
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.caption, a.qa, a.meta) == (b.caption, b.qa, b.meta)
        c = generate_sample(family, 8, detail)
        assert c.image.tobytes() != a.image.tobytes()


def test_charts_do_not_depend_on_order_or_user_style():
    """The chart family reuses one matplotlib Figure; its pixels must depend on the seed only."""
    import matplotlib

    def fingerprint(seeds, detail):
        return [generate_sample("chart", s, detail).image.tobytes() for s in seeds]

    for detail in DETAILS:
        forward = fingerprint(range(4), detail)
        assert fingerprint(reversed(range(4)), detail) == forward[::-1]
        with matplotlib.rc_context({"axes.facecolor": "black", "font.size": 20, "lines.linewidth": 9}):
            assert fingerprint(range(4), detail) == forward  # a notebook's style must not leak in


def test_generate_samples_uses_consecutive_seeds():
    samples = generate_samples("scene", 3, start_seed=5, detail="fine", image_size=128)
    assert [s.seed for s in samples] == [5, 6, 7]
    assert samples[1].image.tobytes() == generate_sample("scene", 6, "fine", 128).image.tobytes()


def test_global_rng_untouched():
    import random
    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_sample("chart", 0)
    generate_sample("ocr", 0, "fine")
    assert random.random() == expected


@pytest.mark.parametrize("kwargs, words", [
    (dict(family="photo", seed=0), "unknown task family"),
    (dict(family="scene", seed=0, detail="medium"), "unknown detail level"),
    (dict(family="scene", seed=0, image_size=32), "image_size must be"),
    (dict(family="scene", seed=0, detail="fine", force_answer="7"), "not a possible answer"),
    (dict(family="scene", seed=0, detail="coarse", force_answer="2"), "only supported for detail='fine'"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        generate_sample(**kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_fine_answers_do_not_leak_into_low_res(family):
    """Forcing a different fine answer changes the high-res image but not its low-res view."""
    for seed in range(2):
        options = generate_sample(family, seed, "fine").qa[0].options
        samples = [generate_sample(family, seed, "fine", force_answer=o) for o in options]
        assert [s.qa[0].answer for s in samples] == options
        lows = [low_res(s.image) for s in samples]
        highs = [np.asarray(s.image, dtype=np.int16) for s in samples]
        for i in range(1, len(samples)):
            assert np.abs(highs[i] - highs[0]).max() >= 40, "the fine evidence must be visible at high res"
            channel_means = (lows[i].mean(dim=(1, 2)) - lows[0].mean(dim=(1, 2))).abs()
            assert channel_means.max() < 2, f"{family}: low-res channel means differ by {channel_means.max():.2f}/255"
            # Pixel by pixel too: only the faded edges of the textured region may differ, by ~1/255 at most.
            assert (lows[i] - lows[0]).abs().max() < 1.5


def test_coarse_answers_are_visible_in_low_res():
    """The contrast case: two coarse scenes with different shape counts differ clearly at low res."""
    by_count = {}
    for seed in range(20):
        s = generate_sample("scene", seed, "coarse")
        by_count.setdefault(s.qa[0].answer, s)
    a, b = by_count["2"], by_count["5"]
    assert (low_res(a.image) - low_res(b.image)).abs().max() > 100
