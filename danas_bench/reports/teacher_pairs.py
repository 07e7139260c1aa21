"""Two teachers of one dataset, paired on the same students: does the one with the higher test accuracy make
better students, on average and at the top?

A teacher's margin over its best student (docs/teachers.md) can rise because the teacher is better or fall
because its students are; this says which. Each architecture's seed mean (the seeds both tables hold) under
teacher A minus under teacher B, with a 95% t-interval over the non-zero cells, over all of them and over the
top 1% by the no-KD table's seed mean (runs of neither teacher, so the pick favours neither and shares no noise
with them; only where that is 5 cells or more). The intervals hold the seeds' noise per cell, not the noise of
training each teacher once, nor noise a seed shares across cells.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl

from danas_bench.core import space
from danas_bench.core.pairs import split_pair
from danas_bench.core.paths import table_path
from danas_bench.reports.reliability import mean_ci

TOP_SHARE = 0.01  # "the top": this share of the non-zero cells, by the no-KD table
MIN_TOP = 5  # fewer top cells than this (a sample under 500 cells) give no top line: an interval on 2 is noise


def seed_means(pair: str, recipe_id: str, seeds: list[int], name: str, root: Path | None = None) -> pl.DataFrame:
    """arch_index -> mean test accuracy over ``seeds`` (column ``name``), for the architectures that hold all."""
    path = table_path(pair, recipe_id, root)
    if not path.exists():
        raise FileNotFoundError(f"{pair}: no merged table {path}; merge it first (`danas-bench merge pair={pair} ...`)")
    df = pl.read_parquet(path, columns=["arch_index", "seed", "test_acc"]).filter(pl.col("seed").is_in(seeds))
    return (
        df.group_by("arch_index")
        .agg(pl.col("test_acc").mean().alias(name), pl.len().alias("n"))
        .filter(pl.col("n") == len(seeds))
        .drop("n")
    )


def compare(dataset: str, a: str, b: str, recipe_id: str, seeds: list[int], root: Path | None = None) -> dict:
    """Teacher ``a``'s students minus teacher ``b``'s, paired by architecture (shares, not pp)."""
    if a == b:
        raise ValueError(f"compare two different teachers, got {a} twice")
    both = seed_means(f"{dataset}/{a}", recipe_id, seeds, "A", root).join(
        seed_means(f"{dataset}/{b}", recipe_id, seeds, "B", root), on="arch_index"
    )
    both = both.filter(~pl.Series(space.zero_cells(both["arch_index"].to_numpy())))
    if both.height < 2:
        raise ValueError(f"{dataset}/{a} and {dataset}/{b} share {both.height} non-zero cells with seeds {seeds}")
    out = {"dataset": dataset, "a": a, "b": b, "recipe_id": recipe_id, "seeds": list(seeds), "cells": both.height}
    out["all"] = _summary((both["A"] - both["B"]).to_numpy())
    if "none" not in (a, b) and int(both.height * TOP_SHARE) >= MIN_TOP:
        ranked = both.join(seed_means(f"{dataset}/none", recipe_id, seeds, "none", root), on="arch_index")
        ranked = ranked.sort(["none", "arch_index"], descending=[True, False])  # ties: the lower index first
        ranked = ranked.head(int(ranked.height * TOP_SHARE))
        out["top"] = _summary((ranked["A"] - ranked["B"]).to_numpy())
    out["best_seed_mean"] = {"A": float(both["A"].max()), "B": float(both["B"].max())}
    return out


def _summary(d: np.ndarray) -> dict:
    m, lo, hi = mean_ci(d)
    return {"cells": len(d), "mean": m, "ci": (lo, hi), "a_better": float(np.mean(d > 0))}


def shipped(figures: list[dict], root: Path | None = None) -> list[dict]:
    """``compare`` for every two KD tables of one dataset and recipe in ``figures``
    (``reliability.shipped_figures()`` rows), the teacher with the higher test accuracy as A, on the seeds
    both tables' figures use."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in figures:
        if "teacher_margin" in r:
            groups.setdefault((split_pair(r["pair"])[0], r["recipe_id"]), []).append(r)
    out = []
    for (dataset, rid), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: -(r["teacher_margin"] + r["best_seed_mean"]))  # stronger teacher first
        for ra, rb in combinations(rows, 2):
            seeds = sorted(set(ra["seeds"]) & set(rb["seeds"]))
            if len(seeds) < 1:
                continue
            res = compare(dataset, split_pair(ra["pair"])[1], split_pair(rb["pair"])[1], rid, seeds, root)
            res["teacher_acc"] = {k: r["teacher_margin"] + r["best_seed_mean"] for k, r in (("A", ra), ("B", rb))}
            out.append(res)
    return out


def render(rows: list[dict]) -> list[str]:
    """Markdown lines: one row per pair of teachers."""
    if not rows:
        return ["No dataset holds two KD tables of one recipe yet."]

    def ci(s: dict | None) -> str:
        if s is None:
            return "-"
        lo, hi = s["ci"]
        return f"{100 * s['mean']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] ({s['a_better']:.0%})"

    lines = [
        "| dataset | recipe | A (test acc %) | B (test acc %) | seeds | cells | A - B, all cells, pp [95% CI] "
        f"(A better on) | A - B, top {100 * TOP_SHARE:g}% by no-KD, pp [95% CI] (A better on) | "
        "best seed-mean student A / B % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ta, tb = r["teacher_acc"]["A"], r["teacher_acc"]["B"]
        top = r.get("top")
        top_cells = f", {top['cells']} cells" if top else ""
        lines.append(
            f"| {r['dataset']} | `{r['recipe_id']}` | {r['a']} ({100 * ta:.2f}) | {r['b']} ({100 * tb:.2f}) | "
            f"{','.join(map(str, r['seeds']))} | {r['cells']} | {ci(r['all'])} | "
            f"{ci(top)}{top_cells} | "
            f"{100 * r['best_seed_mean']['A']:.2f} / {100 * r['best_seed_mean']['B']:.2f} |"
        )
    return lines
