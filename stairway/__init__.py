"""Stairway: the command line that ties the daemon and the trainer together."""

import os

# numba's parallel kernels (MuZero's batched searches) run on OpenMP, whose idle threads spin
# for ~300,000 iterations by default before they sleep: two trainers on one host (or a trainer
# beside the daemon) then spent their cores spinning, and a 10-s MuZero training took 120 s
# next to another. A short spin keeps one process within ~10 % of the default and two at 25 s.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
