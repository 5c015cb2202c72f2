"""The package's default for torch's OpenMP threads (dsvl_lab/__init__.py; measured in
benchmarks/bench_thread_policy.py): set before torch starts, and never over the user's own value."""
from __future__ import annotations

import os
import subprocess
import sys

PROBE = "import dsvl_lab, os; print(os.environ.get('GOMP_SPINCOUNT'))"


def spin_count_after_import(env: dict) -> str:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_the_package_sets_a_short_spin_unless_the_user_chose_one():
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    assert spin_count_after_import(env) == "10000"
    assert spin_count_after_import({**env, "GOMP_SPINCOUNT": "300000"}) == "300000"
