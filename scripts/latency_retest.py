"""Test-retest of per-architecture latency on this machine: each method times the same seeded sample of
digits students twice, and the Spearman correlation of the two rankings is its reliability.

- back to back: each architecture's repeats in a row, their median (the archs files until session 13);
- round-robin: one forward per architecture in turn, for several rounds, each keeping its fastest
  (``archinfo.round_robin_latency``, the archs files since).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/latency_retest.py [--n 300] [--repeats 5] [--rounds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from danas_bench.core import space
from danas_bench.core.recipe import recipe_for
from danas_bench.tables.archinfo import LATENCY_BATCH, round_robin_latency
from danas_bench.training import data as data_mod
from danas_bench.training.student import build


def back_to_back(models, x, repeats: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for m in models:
            m(x)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                m(x)
                times.append(time.perf_counter() - t0)
            out.append(np.median(times))
    return 1000.0 * np.array(out) / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(1)
    recipe, ds = recipe_for("digits", "v1"), data_mod.load("digits")
    idx = np.random.default_rng(0).choice(space.canonical_indices(), a.n, replace=False)
    models = [build(int(i), 0, ds.shape[0], ds.num_classes, ds.ndim, **recipe.widths()).eval() for i in idx]
    x = ds.x["test"][:LATENCY_BATCH]
    runs = {
        "back to back (median)": lambda: back_to_back(models, x, a.repeats),
        "round-robin (fastest)": lambda: round_robin_latency(models, x, a.rounds),
    }
    for name, f in runs.items():
        first, second = f(), f()
        rho = spearmanr(first, second).statistic
        print(f"{name}: retest Spearman {rho:.3f}, median {np.median(first):.4f} ms per sample")


if __name__ == "__main__":
    main()
