"""The old home of notebook 02's helpers, kept so that existing imports still work.

New code imports from the module of the concept: ``images`` (views, zooms, contact sheets),
``answer_regions`` (where the answer is drawn), ``tokens`` (:func:`supervised_text`) and
``data_mixing`` (stage data table, modality warm-up and grouping).
``dsvl_lab.ablations.examples`` still imports ``high_res_view`` and ``low_res_view`` from here.
"""
from __future__ import annotations

from .answer_regions import answer_masks, answer_region, answer_variants
from .data_mixing import (MODALITY_COLORS, measured_language_share, modality_grid, plot_modality_strips,
                          plot_warmup, stage_data_table)
from .images import (high_res_view, low_res_view, pair_difference, plot_answer_pair, plot_detail_views,
                     show_contact_sheet)
from .tokens import supervised_text

__all__ = ["MODALITY_COLORS", "answer_masks", "answer_region", "answer_variants", "high_res_view", "low_res_view",
           "measured_language_share", "modality_grid", "pair_difference", "plot_answer_pair", "plot_detail_views",
           "plot_modality_strips", "plot_warmup", "show_contact_sheet", "stage_data_table", "supervised_text"]
