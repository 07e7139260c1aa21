#!/usr/bin/env python3
"""Try a change to a dataset's served recipe on a seeded sample of cells, and set the datasheet's own figures
(``reliability.table_figures``: ICC(1), top-10% held-out percentile, convergence, KD gain, collapse, best
student and teacher margin) beside the shipped tables' figures on the same cells and seeds. A probe, not a
recipe search: it writes nothing; ``danas-bench pilot`` is what chooses and records a recipe.

    .venv/bin/python scripts/probe_recipe.py digits n_train=500                  # 128 cells x seeds 0, 1
    .venv/bin/python scripts/probe_recipe.py mnist1d epochs=40 --teachers none tcn --cells 64
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import polars as pl
import yaml

from danas_bench.core.pairs import TEACHERS
from danas_bench.core.recipe import KD, Recipe, recipe_for
from danas_bench.reports.noise_sources import sample_cells, table_rows
from danas_bench.reports.reliability import COLUMNS, table_figures

SHOWN = (
    "icc1",
    "top10_heldout_pct",
    "late_gain",
    "mean",
    "kd_gain",
    "collapsed",
    "best_seed_mean",
    "teacher_margin",
)


def probe(recipe: Recipe, teacher: str, cells: np.ndarray, seeds: list[int], chunk: int = 64) -> pl.DataFrame:
    """The runs of ``cells`` x ``seeds`` under ``recipe``, as table rows (the columns the figures read)."""
    from danas_bench.training.engine import Task, train_many

    task = Task.make(recipe, KD(teacher))
    recs = [
        r
        for s in seeds
        for i in range(0, len(cells), chunk)
        for r in train_many(cells[i : i + chunk].tolist(), s, task)
    ]
    return pl.DataFrame([{c: r[c] for c in COLUMNS} for r in recs])


def figures(frames: dict[str, pl.DataFrame], dataset: str) -> dict[str, dict]:
    from danas_bench.training import teachers

    none = frames.get("none")
    out = {}
    for t, f in frames.items():
        acc = None if t == "none" else teachers.info(dataset, t)["accuracy"]["test"]
        out[t] = table_figures(f, None if t == "none" else none, acc)
    return out


def fmt(r: dict, k: str) -> str:
    v = r.get(k)
    if v is None:
        return "-"
    if k == "kd_gain":
        lo, hi = r["kd_gain_ci"]
        return f"{100 * v:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] pp"
    if k == "collapsed":
        return f"{100 * v:.2f}%"
    if k in ("late_gain", "teacher_margin"):
        return f"{100 * v:+.2f} pp"
    if k in ("mean", "best_seed_mean"):
        return f"{100 * v:.2f}%"
    return f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("changes", nargs="*", help="recipe fields to change, field=value (YAML values)")
    ap.add_argument("--cells", type=int, default=128, help="seeded non-zero canonical cells (default 128)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--teachers", nargs="+", help="default: none and every current teacher")
    a = ap.parse_args(argv)
    base = recipe_for(a.dataset)
    changes = {}
    for c in a.changes:
        key, sep, value = c.partition("=")
        if not sep or key not in {f.name for f in dataclasses.fields(Recipe)} or key == "dataset":
            ap.error(f"{c!r}: write field=value with a Recipe field other than dataset")
        changes[key] = yaml.safe_load(value)
    try:
        recipe = Recipe.from_dict({**dataclasses.asdict(base), **changes})
    except ValueError as exc:
        ap.error(str(exc))
    cells = sample_cells(a.cells)
    teachers = a.teachers or ["none", *TEACHERS[a.dataset]]
    what = f"{a.dataset}: served {base.recipe_id} -> probe {recipe.recipe_id} ({changes or 'no change'})"
    print(f"{what}, {len(cells)} cells x seeds {a.seeds} (served: the shipped table's runs of them)")
    new = figures({t: probe(recipe, t, cells, a.seeds) for t in teachers}, a.dataset)
    old_frames = {t: table_rows(f"{a.dataset}/{t}", base.recipe_id, cells, a.seeds, COLUMNS) for t in teachers}
    old = figures({t: f for t, f in old_frames.items() if f is not None and f.height}, a.dataset)
    for t in teachers:
        shown = [k for k in SHOWN if k in new[t]]
        print(f"  {t}: " + ", ".join(f"{k} {fmt(old.get(t, {}), k)} -> {fmt(new[t], k)}" for k in shown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
