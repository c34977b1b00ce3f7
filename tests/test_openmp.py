"""facegen sets a short OpenMP spin before torch starts, and a value the user set wins."""

import os
import subprocess
import sys

import facegen

PROBE = "import facegen, os, torch; print(os.environ['GOMP_SPINCOUNT'], torch.get_num_threads() >= 1)"


def run(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | env
    return subprocess.run([sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, check=True).stdout


def test_importing_facegen_sets_the_short_spin_before_torch() -> None:
    assert run({}) == f"{facegen.OPENMP_SPIN_COUNT} True\n" == "10000 True\n"


def test_the_users_value_wins() -> None:
    assert run({"GOMP_SPINCOUNT": "5"}) == "5 True\n"
