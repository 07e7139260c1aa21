#!/usr/bin/env python3
"""Two teachers of one dataset, paired on the same students: does the one with the higher test accuracy make
better students, on average and at the top? Each architecture's seed mean (the seeds both tables hold) under
teacher A minus under teacher B, with a bootstrap 95% CI over the non-zero cells, over all of them and over the
top 1% by the no-KD table's seed mean (runs of neither teacher, so the pick favours neither and shares no noise
with them). A teacher's margin over its best student (docs/teachers.md) can rise because the teacher is better
or fall because its students are; this says which. The CIs resample cells: they hold the seeds' noise per cell
but not the noise of training each teacher once, nor noise a seed shares across cells.

    .venv/bin/python scripts/compare_teachers.py mnist1d resnet_ens resnet
    .venv/bin/python scripts/compare_teachers.py digits vgg mlp --recipe v2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from danas_bench.core import space
from danas_bench.core.paths import table_path
from danas_bench.core.recipe import recipe_id_of


def seed_means(pair: str, recipe_id: str, seeds: list[int], name: str | None = None) -> pl.DataFrame:
    """arch_index -> mean test accuracy over ``seeds`` (column ``name``, default the pair), for the
    architectures that hold all of them."""
    path = table_path(pair, recipe_id)
    if not path.exists():
        raise SystemExit(f"{pair}: no merged table {path}; merge it first (`danas-bench merge pair={pair} ...`)")
    df = pl.read_parquet(path, columns=["arch_index", "seed", "test_acc"]).filter(pl.col("seed").is_in(seeds))
    return (
        df.group_by("arch_index")
        .agg(pl.col("test_acc").mean().alias(name or pair), pl.len().alias("n"))
        .filter(pl.col("n") == len(seeds))
        .drop("n")
    )


def bootstrap_ci(d: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (reps, len(d)))].mean(1)
    return float(d.mean()), *(float(x) for x in np.percentile(means, [2.5, 97.5]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("a", help="a teacher (or none)")
    ap.add_argument("b", help="another teacher to compare it with (or none)")
    ap.add_argument("--recipe", default="v2", help="a recipe version or id (default v2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds both tables hold")
    a = ap.parse_args(argv)
    if a.a == a.b:
        ap.error(f"compare two different teachers, got {a.a} twice")
    rid = recipe_id_of(a.dataset, a.recipe)
    pa_, pb = f"{a.dataset}/{a.a}", f"{a.dataset}/{a.b}"
    both = seed_means(pa_, rid, a.seeds, "A").join(seed_means(pb, rid, a.seeds, "B"), on="arch_index")
    both = both.filter(~pl.Series(space.zero_cells(both["arch_index"].to_numpy())))
    if both.height == 0:
        raise SystemExit(f"{pa_} and {pb} share no non-zero cell with seeds {a.seeds}")
    print(f"{pa_} (A) vs {pb} (B), recipe {rid}, seeds {a.seeds}: {both.height} non-zero cells")
    d = (both["A"] - both["B"]).to_numpy()
    parts = [("all cells", d)]
    if "none" not in (a.a, a.b):  # the top by the no-KD table: neither teacher's runs
        ranked = both.join(seed_means(f"{a.dataset}/none", rid, a.seeds, "none"), on="arch_index")
        ranked = ranked.sort(["none", "arch_index"], descending=[True, False])  # ties: the lower index first
        ranked = ranked.head(max(1, ranked.height // 100))
        parts.append((f"top 1% by no-KD ({ranked.height} cells)", (ranked["A"] - ranked["B"]).to_numpy()))
    for name, x in parts:
        m, lo, hi = bootstrap_ci(x)
        print(f"  {name}: A - B {100 * m:+.2f} pp [{100 * lo:+.2f}, {100 * hi:+.2f}], A better on {np.mean(x > 0):.0%}")
    print(f"  best seed mean: A {100 * both['A'].max():.2f}%, B {100 * both['B'].max():.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
