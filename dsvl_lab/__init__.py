"""dsvl_lab: a workbench for DeepSeek-VL.

Importing the package sets one default for torch's CPU threads, before torch starts its OpenMP runtime
(it reads the setting once, then): ``GOMP_SPINCOUNT=10000``. An idle OpenMP thread spins that many
iterations waiting for the next parallel region, then sleeps, instead of spinning for far longer.
Alone on the machine that costs a little; when two processes each use every core (a notebook beside a
sweep, the tests beside a run), the long spinning made both crawl. Measured on a 2-core CPU, stage 3 of
``dsvl-tiny-hybrid`` in fp32, steps per second (``benchmarks/bench_thread_policy.py``, 2026-12-01):

    policy                     alone    two processes at once, in total
    torch's default             1.23    0.48   (each at a fifth of its speed)
    GOMP_SPINCOUNT=10000        1.17    1.04   (the default here)
    OMP_WAIT_POLICY=PASSIVE     1.02    1.34

A value you set yourself wins (``setdefault``); it has no effect when torch was imported first.
"""
import os

os.environ.setdefault("GOMP_SPINCOUNT", "10000")
