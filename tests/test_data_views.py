"""Notebook 02's helpers (the data world): images, answer regions, data mixing."""
from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from dsvl_lab.data.mixing import ModalityPlan, WarmupSchedule  # noqa: E402
from dsvl_lab.data.stage_data import STAGE_DATA_PRESETS  # noqa: E402
from dsvl_lab.data.tasks import FAMILIES, generate_sample, generate_samples  # noqa: E402
from dsvl_lab.inspection.answer_regions import answer_masks, answer_region, answer_variants  # noqa: E402
from dsvl_lab.inspection.data_mixing import (  # noqa: E402
    measured_language_share, modality_grid, plot_modality_strips, plot_warmup, stage_data_table,
)
from dsvl_lab.inspection.images import (  # noqa: E402
    low_res_view, pair_difference, plot_answer_pair, plot_detail_views, show_contact_sheet,
)


def test_low_res_view_is_the_models_resize():
    flat = Image.new("RGB", (64, 64), (200, 100, 50))
    low = low_res_view(flat, 16)
    assert low.shape == (16, 16, 3)
    assert np.allclose(low, np.array([200, 100, 50]) / 255, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_answer_variants_differ_only_where_the_answer_is(family):
    variants = answer_variants(family, seed=1, image_size=64)
    natural = generate_sample(family, 1, detail="fine", image_size=64)
    assert list(variants) == natural.qa[0].options
    assert all(v.qa[0].answer == a for a, v in variants.items())
    union, intersection = answer_masks(variants, natural.qa[0].answer)
    assert union.any() and not (intersection & ~union).any()
    assert union.mean() < 0.5  # the rest of the picture is shared
    x0, y0, x1, y1 = answer_region(variants, natural.qa[0].answer, factor=2)
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert all(v % 2 == 0 for v in (x0, y0, x1, y1))  # whole pixels of the 2x smaller low-res view


def test_fine_pairs_vanish_at_low_res():
    variants = answer_variants("doc", seed=0, image_size=256)
    first, second = list(variants.values())[:2]
    diff = pair_difference(first.image, second.image, 64)
    assert diff["high_max"] >= 40 and diff["changed_pixels"] > 0
    assert diff["low_max"] < 2.0  # below one grey level of 255 (plus the edge leak of the fade-in)
    fig = plot_answer_pair(first, second, 64)
    plt.close(fig)


def test_detail_views_figure():
    samples, regions = [], []
    for family in ("chart", "scene"):
        variants = answer_variants(family, seed=0, image_size=64)
        sample = generate_sample(family, 0, detail="fine", image_size=64)
        samples.append(sample)
        regions.append(answer_region(variants, sample.qa[0].answer, factor=2))
    fig = plot_detail_views(samples, regions, low_size=32)
    assert len(fig.axes) == 8
    plt.close(fig)


def test_contact_sheet_keeps_the_backend(tmp_path):
    pytest.importorskip("IPython")
    plt.switch_backend("pdf")
    try:
        image = show_contact_sheet(generate_samples("scene", 2, image_size=64), tmp_path / "sheet.png")
        assert matplotlib.get_backend().lower() == "pdf"
        assert image.data[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "sheet.png").exists()
        before = set(Path(tempfile.gettempdir()).glob("dsvl_sheet_*"))
        show_contact_sheet(generate_samples("scene", 1, image_size=64))   # temporary file, removed
        assert set(Path(tempfile.gettempdir()).glob("dsvl_sheet_*")) == before
    finally:
        plt.switch_backend("Agg")


def test_stage_data_table_has_a_row_per_preset():
    table = stage_data_table(STAGE_DATA_PRESETS).splitlines()
    assert len(table) == 2 + len(STAGE_DATA_PRESETS)
    assert "`stage2_joint` | 0.7 | linear, 200 steps" in table[3]


def test_measured_share_follows_the_schedule():
    plan = ModalityPlan(WarmupSchedule(0.7, steps=0), seed=3)
    centres, shares = measured_language_share(plan, 1010, window=50)
    assert len(shares) == 20 and centres[0] == 24.5
    assert abs(shares.mean() - 0.7) < 0.01 and np.abs(shares - 0.7).max() < 0.1  # blocks of 16 shuffle inside a window
    fig = plot_warmup({"linear": ModalityPlan(WarmupSchedule(0.7, 100, "linear")),
                       "step": ModalityPlan(WarmupSchedule(0.7, 100, "step"))}, steps=300)
    plt.close(fig)


def test_modality_grid_grouped_rows_are_uniform():
    schedule = WarmupSchedule(0.5, steps=0)
    grouped = modality_grid(ModalityPlan(schedule, 0, True, 8), steps=30, batch_size=8)
    mixed = modality_grid(ModalityPlan(schedule, 0, False, 8), steps=30, batch_size=8)
    assert grouped.shape == mixed.shape == (30, 8)
    assert all(row.all() or not row.any() for row in grouped)
    assert any(row.any() and not row.all() for row in mixed)
    fig = plot_modality_strips({"grouped": grouped, "mixed": mixed})
    plt.close(fig)
