"""reports/noise_sources: the test split's halves are the same runs, and the variance split recovers known parts."""

import numpy as np
import pytest

from danas_bench.core import space
from danas_bench.core.recipe import KD, recipe_for
from danas_bench.reports import noise_sources as ns
from danas_bench.reports.reliability import icc1


def test_halves_are_the_full_test_split_of_the_same_runs():
    """Scoring on two halves changes no training: the halves' weighted mean is each run's full-test accuracy."""
    from danas_bench.training.engine import Task, train_many

    cells = ns.sample_cells(4, seed=3)
    assert not space.zero_cells(cells).any() and (np.diff(cells) > 0).all()
    task = Task.make(recipe_for("digits"), KD("resnet"))
    full = np.array([r["test_acc"] for r in train_many(cells.tolist(), 0, task)])
    halves, n_a, n_b = ns.split_task(task)
    assert n_a + n_b == task.dataset.y["test"].shape[0] and abs(n_a - n_b) <= 1
    assert halves.dataset.x["train"] is task.dataset.x["train"]  # the same training data
    recs = train_many(cells.tolist(), 0, halves)
    both = np.array([(n_a * r["valid_acc"] + n_b * r["test_acc"]) / (n_a + n_b) for r in recs])
    assert both == pytest.approx(full, abs=1e-6)


def test_components_recover_known_variances():
    """Simulated cells x 2 seeds with known parts: architecture, training noise, a cell's lasting luck on the
    test examples, and per-run sampling noise (each half has twice the full split's sampling variance)."""
    rng = np.random.default_rng(0)
    n, k, n_half = 40_000, 2, 500
    arch, train, luck, run = 4e-4, 2e-4, 0.5e-4, 1e-4  # variances of the full-split accuracy
    q = 0.9 + rng.normal(0, np.sqrt(arch), (n, 1)) + rng.normal(0, np.sqrt(train), (n, k))
    luck_a, luck_b = (rng.normal(0, np.sqrt(2 * luck), (n, 1)) for _ in range(2))
    a = q + luck_a + rng.normal(0, np.sqrt(2 * run), (n, k))
    b = q + luck_b + rng.normal(0, np.sqrt(2 * run), (n, k))
    c = ns.components(a, b, n_half, n_half)
    assert c["training"] + c["run_sampling"] == pytest.approx(c["within"])
    assert c["run_sampling"] == pytest.approx(run, rel=0.05)
    assert c["training"] == pytest.approx(train, rel=0.05)
    assert c["cell_sampling"] == pytest.approx(luck, rel=0.15)
    assert c["between"] == pytest.approx(arch + luck, rel=0.05)
    assert c["icc_at"][np.inf] == pytest.approx(arch / (arch + train), abs=0.02)
    assert c["icc_at"][1] == pytest.approx(c["icc"], abs=1e-9)  # the model reproduces the measured ICC(1)
    assert c["icc_halves"] == pytest.approx(np.mean([icc1(a)[0], icc1(b)[0]]))
    assert c["icc_at"][0.5] == pytest.approx(c["icc_halves"], abs=0.02)  # and predicts the halves'
    assert c["icc_at"][0.5] < c["icc_at"][1] < c["icc_at"][10] < c["icc_at"][np.inf]


def test_analyse_reports_the_tables_icc_of_the_same_cells_and_renders():
    import polars as pl

    from danas_bench.core.paths import table_path

    cells = ns.sample_cells(6, seed=1)
    (row,) = ns.analyse("digits", cells, [0, 1], ["none"])
    rid = recipe_for("digits").recipe_id
    df = pl.read_parquet(table_path("digits/none", rid)).filter(pl.col("arch_index").is_in(cells.tolist()))
    wide = df.pivot(on="seed", index="arch_index", values="test_acc").sort("arch_index")
    assert row["table_icc"] == pytest.approx(icc1(wide.select(["0", "1"]).to_numpy())[0])
    assert row["A"].shape == row["B"].shape == (6, 2) and row["recipe_id"] == rid
    text = ns.render([row])
    assert f"| digits/none | {row['table_icc']:.2f} / {row['icc']:.2f} [" in text
    assert "of the seed-to-seed variance; the rest is training" in text
