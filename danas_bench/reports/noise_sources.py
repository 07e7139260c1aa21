"""Where a table's seed noise comes from: training, or the finite test split. Tells whether a larger test
split would lift a dataset's single-run ICC(1) (digits' is 0.34-0.55 in tables v2, target 0.75).

It retrains a seeded sample of non-zero canonical cells with the served recipe and the table's seeds (fresh
draws of the table's runs: a row reproduces only in its own chunk and CPU, docs/generation.md), and scores each
run on two random halves A and B of the test split; the report sets the table's ICC(1) on the same cells beside
the one measured here. A run's full-test accuracy is ``q + e``: ``q`` its accuracy on the
data distribution, ``e`` the sampling error of the test examples. The halves' difference ``A - B`` holds only
sampling error, so its one-way ANOVA over cells x seeds splits ``e`` into a part that changes from seed to seed
(per-run: within-cell noise) and a part a cell keeps over seeds (its luck on these examples: counted as the
architecture's by ICC(1)). Subtracting both from the table's variance components gives the ICC(1) at any test
size m, up to infinity (sampling variance scales as 1/m); the prediction at m = n/2 is checked against the
halves' own ICC(1).

    python -m danas_bench.reports.noise_sources digits --cells 256       # -> docs/noise-sources.md
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from danas_bench.core import space
from danas_bench.core.pairs import TEACHERS
from danas_bench.core.paths import table_path
from danas_bench.core.recipe import KD, recipe_for
from danas_bench.reports.reliability import TARGET_ICC1, icc1, icc1_ci, mean_squares

SIZES = (0.5, 1, 2, 5, 10, np.inf)  # test sizes, in multiples of the dataset's test split


def sample_cells(n: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``n`` non-zero canonical cells, sorted."""
    live = space.canonical_indices()
    live = live[~space.zero_cells(live)]
    return np.sort(np.random.default_rng(seed).choice(live, size=min(n, len(live)), replace=False))


def split_task(task, seed: int = 0):
    """``task`` with its test split in the valid and test slots: half A as "valid", half B as "test"
    (the valid split trains nothing; it only scores the curve). Returns (task, n_a, n_b)."""
    ds = task.dataset
    n = ds.y["test"].shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    a, b = perm[: n // 2], perm[n // 2 :]
    x = {"train": ds.x["train"], "valid": ds.x["test"][a], "test": ds.x["test"][b]}
    y = {"train": ds.y["train"], "valid": ds.y["test"][a], "test": ds.y["test"][b]}
    tl = task.teacher_logits
    if tl is not None:
        tl = {"train": tl["train"], "valid": tl["test"][a], "test": tl["test"][b]}
    return replace(task, dataset=replace(ds, x=x, y=y), teacher_logits=tl), len(a), len(b)


def train_halves(dataset: str, teacher: str, cells: np.ndarray, seeds: list[int], chunk: int = 64) -> dict:
    """(cells, seeds) arrays of accuracy on halves A and B, from the served recipe's runs."""
    from danas_bench.training.engine import Task, train_many

    recipe = recipe_for(dataset)
    task, n_a, n_b = split_task(Task.make(recipe, KD(teacher)))
    acc = {"A": np.zeros((len(cells), len(seeds))), "B": np.zeros((len(cells), len(seeds)))}
    for j, seed in enumerate(seeds):
        for i in range(0, len(cells), chunk):
            for k, rec in enumerate(train_many(cells[i : i + chunk].tolist(), seed, task)):
                acc["A"][i + k, j], acc["B"][i + k, j] = rec["valid_acc"], rec["test_acc"]
    return {"recipe_id": recipe.recipe_id, "n_a": n_a, "n_b": n_b, **acc}


def table_rows(pair: str, recipe_id: str, cells: np.ndarray, seeds: list[int], columns: list[str]):
    """The shipped table's rows of these cells and seeds (``columns``); None without a table."""
    path = table_path(pair, recipe_id)
    if not path.exists():
        return None
    keep = pl.col("arch_index").is_in(cells.tolist()) & pl.col("seed").is_in(seeds)
    return pl.read_parquet(path, columns=columns).filter(keep)


def table_acc(pair: str, recipe_id: str, cells: np.ndarray, seeds: list[int]) -> np.ndarray | None:
    """The shipped table's test accuracy of these cells and seeds, (cells, seeds); None without a table."""
    df = table_rows(pair, recipe_id, cells, seeds, ["arch_index", "seed", "test_acc"])
    if df is None:
        return None
    wide = df.pivot(on="seed", index="arch_index", values="test_acc").sort("arch_index")
    return wide.select([str(s) for s in seeds]).to_numpy()


def components(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> dict:
    """Variance components of the full-test accuracy (shares: accuracy in [0, 1]) and ICC(1) per test size."""
    k = a.shape[1]
    n = n_a + n_b
    full = (n_a * a + n_b * b) / n
    msb, msw = mean_squares(full)
    between = (msb - msw) / k
    msb_d, msw_d = mean_squares(a - b)
    f = n_a * n_b / n**2  # Var(e) over Var(A - B): v / n against v / n_a + v / n_b
    run_sampling = f * msw_d  # within-cell (seed-to-seed) sampling variance of the full-test accuracy
    cell_sampling = f * max(0.0, (msb_d - msw_d) / k)  # a cell's lasting luck on these examples
    training = msw - run_sampling
    arch = between - cell_sampling

    def icc_at(m: float) -> float:
        r = 0.0 if np.isinf(m) else 1 / m  # sampling variance scales as 1/m, m in multiples of n
        num = arch + cell_sampling * r
        return float(num / (num + training + run_sampling * r))

    return {
        "icc": icc1(full)[0],
        "icc_ci": icc1_ci(full),
        "icc_halves": float(np.mean([icc1(a)[0], icc1(b)[0]])),
        "within": float(msw),
        "run_sampling": float(run_sampling),
        "training": float(training),
        "between": float(between),
        "cell_sampling": float(cell_sampling),
        "icc_at": {m: icc_at(m) for m in SIZES},
    }


def bootstrap(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int, reps: int = 1000, seed: int = 0) -> dict:
    """95% intervals over cells (resampled with replacement) of the sampling share and ICC(1) at infinity."""
    rng = np.random.default_rng(seed)
    share, inf = [], []
    for _ in range(reps):
        i = rng.integers(0, len(a), len(a))
        c = components(a[i], b[i], n_a, n_b)
        share.append(c["run_sampling"] / c["within"])
        inf.append(c["icc_at"][np.inf])
    return {"sampling_share": np.percentile(share, [2.5, 97.5]), "icc_inf": np.percentile(inf, [2.5, 97.5])}


def analyse(dataset: str, cells: np.ndarray, seeds: list[int], teachers: list[str] | None = None) -> list[dict]:
    rows = []
    for teacher in teachers or ["none", *TEACHERS[dataset]]:
        pair = f"{dataset}/{teacher}"
        h = train_halves(dataset, teacher, cells, seeds)
        shipped = table_acc(pair, h["recipe_id"], cells, seeds)
        table_icc = None if shipped is None or shipped.shape != h["A"].shape else icc1(shipped)[0]
        c = components(h["A"], h["B"], h["n_a"], h["n_b"])
        ci = bootstrap(h["A"], h["B"], h["n_a"], h["n_b"])
        rows.append({"pair": pair, **h, "cells": len(cells), "seeds": seeds, "table_icc": table_icc, **c, "ci": ci})
        print(f"{pair}: ICC(1) {c['icc']:.2f}, at an infinite test split {c['icc_at'][np.inf]:.2f}", flush=True)
    return rows


def render(rows: list[dict]) -> str:
    r0 = rows[0]
    n = r0["n_a"] + r0["n_b"]
    sizes = " | ".join(f"ICC(1) at {'inf' if np.isinf(m) else f'{m * n:.0f}'}" for m in SIZES)
    lines = [
        "# Noise sources: training or the test split?",
        "",
        f"Generated by `python -m danas_bench.reports.noise_sources {r0['pair'].split('/')[0]} --cells {r0['cells']}` "
        "(`danas_bench/reports/noise_sources.py`, whose docstring gives the method). "
        f"{r0['cells']} seeded non-zero canonical cells x seeds {r0['seeds']}, the served recipe "
        f"`{r0['recipe_id']}`, each run scored on two random halves ({r0['n_a']} and {r0['n_b']} examples) of the "
        f"{n}-example test split. Variances in pp^2; intervals: 95% bootstrap over cells.",
        "",
        "| pair | ICC(1): the table's runs of these cells / here [95% CI] | within-cell variance | "
        "of it: test sampling [95% CI] | of it: training | between-cell variance | of it: a cell's luck on these "
        f"examples | ICC(1) of the halves (observed / predicted) | {sizes} [95% CI] |",
        "|" + "---|" * (8 + len(SIZES)),
    ]
    for r in rows:
        table = "no table" if r["table_icc"] is None else f"{r['table_icc']:.2f}"
        lo, hi = (100 * x for x in r["ci"]["sampling_share"])
        icc_lo, icc_hi = r["ci"]["icc_inf"]
        at = " | ".join(f"{r['icc_at'][m]:.2f}" for m in SIZES)
        lines.append(
            f"| {r['pair']} | {table} / {r['icc']:.2f} [{r['icc_ci'][0]:.2f}, {r['icc_ci'][1]:.2f}] | "
            f"{1e4 * r['within']:.2f} | "
            f"{1e4 * r['run_sampling']:.2f} ({100 * r['run_sampling'] / r['within']:.0f}% [{lo:.0f}, {hi:.0f}]) | "
            f"{1e4 * r['training']:.2f} | {1e4 * r['between']:.2f} | {1e4 * r['cell_sampling']:.2f} | "
            f"{r['icc_halves']:.2f} / {r['icc_at'][0.5]:.2f} | {at} [{icc_lo:.2f}, {icc_hi:.2f}] |"
        )
    share = [r["run_sampling"] / r["within"] for r in rows]
    best = max(r["icc_at"][np.inf] for r in rows)
    lines += [
        "",
        f"The test split's sampling is {_span(share)}% of the seed-to-seed "
        f"variance; the rest is training. With an infinite test split the best ICC(1) here would be {best:.2f}"
        + (
            f": a larger test split would not reach {TARGET_ICC1}; the recipe's training noise is the limit."
            if best < TARGET_ICC1
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


def _span(x: list[float]) -> str:
    lo, hi = f"{100 * min(x):.0f}", f"{100 * max(x):.0f}"
    return lo if lo == hi else f"{lo}-{hi}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--cells", type=int, default=256, help="non-zero canonical cells to retrain (default 256)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--teachers", nargs="+", help="default: none and every current teacher")
    ap.add_argument("--out", type=Path, default=Path("docs/noise-sources.md"))
    a = ap.parse_args(argv)
    if len(a.seeds) < 2:
        ap.error("two or more seeds: seed-to-seed noise needs them")
    rows = analyse(a.dataset, sample_cells(a.cells), a.seeds, a.teachers)
    a.out.write_text(render(rows))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
