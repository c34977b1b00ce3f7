"""facegen: PTT Beauty posts -> aligned face dataset -> DDPM -> FID, as a DVC pipeline."""

import os

__version__ = "0.1.0"

# torch's CPU kernels wait on a libgomp (OpenMP) pool; by default a waiting thread spins for a long
# while, and beside another busy process it burns the time slice its sibling needs. A short spin
# keeps the quiet speed and loses far less on a loaded machine (benchmarks/threads.py, 2-core CPU:
# the demo's UNet at 80.6 / 82.8 img/s quiet, 20.8 -> 29.1 img/s beside 2 busy processes). Read
# when libgomp starts, so it holds where facegen is imported before torch (every stage script, the
# CLI, the studio). A value the user set wins; results do not depend on it.
OPENMP_SPIN_COUNT = "10000"
os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
