"""A study as data: ``sweep.yaml`` -> validated arms x seeds -> one resolved ``RunPlan`` per run.

A study's YAML names a *base* (what every arm runs), *arms* (what each changes), *seeds*, the
*baseline* arm the others are compared with, and the *claims* the study tests::

    study: encoder
    base:
      preset: dsvl-tiny-hybrid
      evaluation.samples: 40
    arms:
      siglip: {preset: dsvl-tiny-siglip}
      hybrid: {}
    seeds: [0, 1, 2]
    baseline: siglip
    claims:
      - {arm: hybrid, metric: mean/fine, direction: greater}

Base and arms are *dotted overrides*, applied in that order:

=================================  ==================================================================
key                                what it sets
=================================  ==================================================================
``preset``                         the model preset (``dsvl-lab presets``)
``model.<config field>``           a field of the preset's ``DSVLConfig`` (``model.aligner.depth: 3``,
                                   checked by ``DSVLConfig.replace``):
                                   the run's preset becomes a *variant* ``name[aligner.depth=3]``
``stages``                         which stages run, in order (default: the paper's three)
``stages.<stage>.<field>``         a ``StageSpec`` field, ``data.`` for its ``StageData``
                                   (``stages.stage2_joint.data.language_ratio: 0.1``)
``evaluation.<field>``             a field of :class:`Evaluation`
``precision``                      Lightning precision of training and evaluation: ``32-true``,
                                   ``bf16-mixed``, or ``auto`` (default: bf16 on a GPU or a CPU with fast
                                   bf16 matmuls, else fp32; resolved when the sweep is planned)
=================================  ==================================================================

Everything is checked before anything runs: an unknown key is named with the closest valid one,
and every arm's stages are built (so ``StageSpec`` / ``StageData`` check their values).

Pairing: a run's seed is every stage's ``data.seed`` (the data order and, since ``run_stage`` seeds
everything from it, the initialisation of what trains) and picks the run's block of held-out
evaluation questions (:data:`EVAL_BLOCK`), so two arms of one seed differ only by what the arms set.

One file per step, each using only the ones above it:

* ``errors.py``: :class:`SweepConfigError`;
* ``parts.py``: the pieces, :class:`Evaluation`, :class:`Claim`, :class:`Measure`, :class:`Trend`,
  :class:`Fraction`;
* ``run_plan.py``: :class:`RunPlan`, one resolved run, and the hashes that name its folders;
* ``precision.py``: the ``precision`` key (``auto`` resolved when a sweep is planned);
* ``resolve.py``: :func:`resolve_run`, the overrides applied to the default stages;
* ``study.py``: :class:`SweepSpec`, the whole ``sweep.yaml`` checked, and its runs.

Everything is importable from ``dsvl_lab.ablations.spec`` directly.
"""
from __future__ import annotations

from .errors import SweepConfigError, suggest
from .parts import (DIRECTIONS, STATS, TREND_DIRECTIONS, Claim, Evaluation, Fraction, Measure, Trend,
                    check_strings)
from .precision import PRECISIONS, fast_bf16, resolve_precision
from .resolve import check_chain, merge_into, resolve_run, set_dotted, smoke_version
from .run_plan import EVAL_BLOCK, RunPlan, short_hash
from .study import TOP_KEYS, SweepSpec, check_sections, entries

# Names this module imported for its own use before it became a package; still importable from it.
from ...config import DSVLConfig, did_you_mean, shown, type_name, variant_name  # noqa: F401
from ...data.stage_data import OMITTED_AT_DEFAULT  # noqa: F401
from ...errors import InputError  # noqa: F401
from ...training.run import SMOKE_STEPS  # noqa: F401
from ...training.spec import (SPEC_OMITTED_AT_DEFAULT, STAGE_NAMES, StageConfigError, StageSpec,  # noqa: F401
                              is_int, is_number, stage_spec)

__all__ = [
    "SweepConfigError", "SweepSpec", "RunPlan", "Evaluation", "Claim", "Measure", "Trend", "Fraction",
    "resolve_run", "resolve_precision", "fast_bf16", "short_hash", "EVAL_BLOCK", "PRECISIONS", "TOP_KEYS",
    "DIRECTIONS", "STATS", "TREND_DIRECTIONS", "check_strings", "check_sections", "entries", "check_chain",
    "set_dotted", "merge_into", "smoke_version", "suggest",
]
