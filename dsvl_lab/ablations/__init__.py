"""Ablation studies: a study's YAML (``spec``), its runs (``runner``, ``slurm``), its tables and plots
(``aggregate``, ``plots``) and the ``SweepExplorer`` widget (``explorer``).

    >>> from dsvl_lab.ablations import SweepSpec, run_sweep, aggregate      # doctest: +SKIP
    >>> spec = SweepSpec.load("ablations/encoder/sweep.yaml")                 # doctest: +SKIP
    >>> run_sweep(spec, "runs/sweeps", smoke=True)                            # doctest: +SKIP
    >>> aggregate("runs/sweeps/encoder-smoke")                                # doctest: +SKIP
"""
from .aggregate import aggregate
from .runner import plan_sweep, run_sweep
from .spec import SweepConfigError, SweepSpec

__all__ = ["SweepConfigError", "SweepSpec", "aggregate", "plan_sweep", "run_sweep"]
