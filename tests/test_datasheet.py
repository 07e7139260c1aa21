"""The datasheet is computed from real (tiny) tables and its numbers follow from them."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy.stats import kendalltau

from danas_bench.core import space
from danas_bench.core.paths import shard_dir
from danas_bench.core.recipe import KD, Recipe
from danas_bench.reports import datasheet
from danas_bench.tables import generate
from danas_bench.tables.plan import make_plan, save_plan

PAIRS = ("digits/resnet", "digits/vgg", "digits/none")


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory):
    """Three digits pairs over the same 24 architectures, seed 0, and seeds 1, 2 on a quarter of them."""
    from conftest import make_tables_root

    root = make_tables_root(tmp_path_factory.mktemp("tables"), ("digits",))
    mp = pytest.MonkeyPatch()
    mp.setenv("DANAS_TABLES", str(root))
    mp.setenv("DANAS_CACHE", str(tmp_path_factory.mktemp("cache")))
    recipe = Recipe(dataset="digits", width=4, epochs=1, batch_size=32, n_train=200)
    for pair in PAIRS:
        plan = make_plan(
            pair,
            recipe,
            KD(pair.split("/")[1]),
            seeds=[0],
            archs=24,
            noise_seeds=[1, 2],
            noise_fraction=0.25,
            shard_size=24,
        )
        d = shard_dir(pair, recipe.recipe_id, root)
        plan = save_plan(plan, d)
        generate.run_pending(plan, d, executor="debug", chunk=24, log=lambda *a: None)
        generate.merge(plan, d, root, log=lambda *a: None)
    yield root
    mp.undo()


def test_datasheet_numbers_come_from_the_tables(tiny_tables, tmp_path):
    res = datasheet.write(tiny_tables, tmp_path)
    assert set(res["pairs"]) == set(PAIRS)
    # docs/teachers.md beside it, with each KD table's margins from the same figures
    doc = (tmp_path / "teachers.md").read_text()
    kd_rows = [r for r in res["reliability"] if "teacher_margin" in r]
    assert sorted(r["pair"] for r in kd_rows) == ["digits/resnet", "digits/vgg"]
    for r in kd_rows:
        (line,) = [x for x in doc.splitlines() if x.startswith(f"| {r['pair']} | `{r['recipe_id']}` |")]
        cols = [c.strip() for c in line.strip("|").split("|")]
        assert cols[2] == f"{r['cells']} x 3"
        assert float(cols[5]) == pytest.approx(100 * r["teacher_margin"], abs=0.051)
        assert float(cols[7]) == pytest.approx(100 * r["teacher_margin_heldout"], abs=0.051)
    from danas_bench.reports import teachers as teachers_doc

    teachers_doc.report(tmp_path / "bare.md", None)  # `danas-bench teachers` when a table cannot be read
    assert "Not computed in this run" in (tmp_path / "bare.md").read_text()
    frames = {
        p: pl.read_parquet(next(tiny_tables.glob(f"{p.split('/')[0]}/{p.split('/')[1]}-*.parquet"))) for p in PAIRS
    }
    for pair, s in res["pairs"].items():
        f = frames[pair]
        assert s["rows"] == f.height == 24 + 2 * 6
        assert s["archs_seed0"] == 24 and s["seeds"] == [0, 1, 2]
        assert s["test_acc"]["max"] == pytest.approx(float(f.filter(pl.col("seed") == 0)["test_acc"].max()))
        assert s["core_seconds"] == pytest.approx(float(f["train_seconds"].sum()), rel=1e-6)
        assert s["noise"]["archs"] == 6 and s["noise"]["seeds"] == [0, 1, 2]
    # the KD analysis is the tau between the KD and no-KD seed-0 accuracies, per architecture
    kd = frames["digits/resnet"].filter(pl.col("seed") == 0).sort("arch_index")["test_acc"].to_numpy()
    no = frames["digits/none"].filter(pl.col("seed") == 0).sort("arch_index")["test_acc"].to_numpy()
    expect = kendalltau(kd, no).statistic
    assert res["kd"]["digits/resnet"]["tau_kd_none"] == pytest.approx(expect, nan_ok=True)
    assert res["kd"]["digits/resnet"]["mean_gain"] == pytest.approx(float(np.mean(kd - no)), abs=1e-6)
    assert res["teachers"]["digits"]["archs"] == 24
    # simulated time across shards: one shard per seed here, their mean s / row
    for pair in PAIRS:
        t = res["shard_seconds"][pair]
        per = [
            pl.read_parquet(f)["train_seconds"].mean()
            for f in sorted(tiny_tables.glob(f"shards/{pair.replace('/', '__')}/*/shard-*.parquet"))
        ]
        assert t["shards"] == len(per) == 3
        assert t["max_over_median"] == pytest.approx(max(per) / float(np.median(per)))
    md = (tmp_path / "datasheet.md").read_text()
    assert "Simulated time across shards" in md
    assert "digits/resnet" in md and "KD analysis" in md and "Noise" in md
    assert (tmp_path / "figures" / "datasheet_digits_kd_vs_none.png").stat().st_size > 1000
    assert json.loads((tmp_path / "datasheet.json").read_text())["pairs"].keys() == res["pairs"].keys()


def test_pareto_front_keeps_only_undominated_points():
    cost = np.array([1.0, 2.0, 3.0, 4.0, 2.0])
    acc = np.array([0.5, 0.4, 0.7, 0.6, 0.6])
    fx, fy = datasheet.pareto(cost, acc)
    assert fx.tolist() == [1.0, 2.0, 3.0] and fy.tolist() == [0.5, 0.6, 0.7]


def test_a_pair_with_two_recipes_reports_the_served_one_and_lists_both(tiny_tables, monkeypatch):
    """A v2 table beside v1: the datasheet's pair figures come from the recipe ``open(pair)`` serves (the
    dataset's default), while the reliability section lists every recipe's table."""
    from danas_bench.core import recipe as recipe_mod
    from danas_bench.reports import reliability

    served = Recipe(dataset="digits", width=4, epochs=1, batch_size=32, n_train=200)
    other = served.replace(epochs=2)
    plan = make_plan("digits/none", other, KD("none"), seeds=[0, 1], archs=12, shard_size=12, paired_seeds=2)
    d = shard_dir("digits/none", other.recipe_id, tiny_tables)
    plan = save_plan(plan, d)
    generate.run_pending(plan, d, executor="debug", chunk=12, log=lambda *a: None)
    generate.merge(plan, d, tiny_tables, log=lambda *a: None)
    monkeypatch.setattr(recipe_mod, "recipe_for", lambda dataset, override=None: served)
    pairs = datasheet.load_pairs(tiny_tables)
    assert pairs["digits/none"]["meta"]["recipe_id"] == served.recipe_id
    rows = [r for r in reliability.shipped_figures(tiny_tables) if r["pair"] == "digits/none"]
    assert {r["recipe_id"] for r in rows} == {served.recipe_id, other.recipe_id}


def test_kd_tables_are_compared_with_the_none_table_of_their_own_recipe():
    """The datasheet's pairs are open_all's: a pair that exists only in a v2 in progress (mnist1d/tcn) is not
    set against the v1 none table of its dataset."""
    from danas_bench.query.catalog import default_pairs
    from danas_bench.reports.datasheet import load_pairs

    from conftest import REPO

    root = REPO / "tables"
    pairs = load_pairs(root)
    assert sorted(pairs) == default_pairs(root)
    for pair, p in pairs.items():
        none = pairs.get(f"{pair.split('/')[0]}/none")
        if none is not None:
            assert p["meta"]["recipe_id"] == none["meta"]["recipe_id"], pair


def test_latency_retest_pairs_archs_files_of_the_same_students(tables_root):
    """Two archs files of one dataset with equal widths (recipes that differ only in training) time the same
    students: the datasheet reports their latency Spearman; a file of other widths is not paired."""
    from scipy.stats import spearmanr

    from danas_bench.tables import archinfo

    some = [int(a) for a in space.canonical_indices()[:12]]
    quiet = lambda *a: None  # noqa: E731
    files = [
        archinfo.build_file(Recipe(dataset="digits", width=4, epochs=e), tables_root, some, log=quiet) for e in (1, 2)
    ]
    archinfo.build_file(Recipe(dataset="digits", width=8, epochs=1), tables_root, some, log=quiet)
    (r,) = datasheet.latency_retest(tables_root)
    assert r["dataset"] == "digits" and r["archs"] == 12
    assert sorted(r["files"]) == sorted(str(f.relative_to(tables_root)) for f in files)
    a, b = (pl.read_parquet(f).sort("arch_index")["latency_ms"] for f in files)
    assert r["spearman"] == pytest.approx(spearmanr(a, b).statistic)


def test_v2_targets_are_checked_per_table_and_kd_gain_per_dataset():
    """Each target holds or not on the figures given; KD's gain holds for every pair of a dataset once one
    teacher's CI is above 0; only the v2 tables are checked."""
    from danas_bench.core.recipe import recipe_id_of
    from danas_bench.reports import reliability as rel

    v1, v2 = recipe_id_of("digits", "v1"), recipe_id_of("digits", "v2")
    live = int((~space.zero_cells(space.canonical_indices())).sum())
    base = {"seeds": [0, 1, 2], "cells": live // 2, "cells_seeds_0_1": live, "icc1": 0.8, "late_gain": 0.004}
    kd = {"collapsed": 0.01, "teacher_margin": 0.021, "teacher_margin_heldout": 0.04}
    rows = [
        {"pair": "digits/none", "recipe_id": v2, **base},
        {"pair": "digits/resnet", "recipe_id": v2, **base, **kd, "kd_gain_ci": [0.001, 0.01]},
        {
            "pair": "digits/mlp",
            "recipe_id": v2,
            **base,
            "cells_seeds_0_1": live - 1,
            "icc1": 0.5,
            "icc1_ci": [0.45, 0.55],
            **kd,
            "kd_gain_ci": [-0.01, 0.01],
            "teacher_margin": 0.0197,  # below 2 pp, though it rounds to 2.0 at one decimal
            "collapsed": 0.03,
        },
        {"pair": "digits/none", "recipe_id": v1, **base, "icc1": 0.1},
    ]
    checks = {c["pair"]: c for c in rel.target_checks(rows)}
    assert set(checks) == {"digits/none", "digits/resnet", "digits/mlp"}  # v1 is not checked
    assert all(v[1] for k, v in checks["digits/resnet"].items() if isinstance(v, tuple))
    mlp = checks["digits/mlp"]
    assert not mlp["two_seeds_everywhere"][1] and not mlp["icc1"][1] and not mlp["collapsed"][1]
    assert not mlp["teacher_margin"][1] and mlp["teacher_margin"][0] == (0.0197, 0.04)
    assert mlp["kd_gain_ci_above_0"][1]  # resnet's CI is above 0: the dataset's target holds
    lines = rel.render_targets(list(checks.values()))
    assert len(lines) == 5 and "1.97 (4.00) pp: no" in lines[-1] and "0.50 [0.45, 0.55]: no" in lines[-1]
    assert f"| {live} of {live}: **yes** |" in lines[2]  # seed 2 on half the cells: seeds 0 and 1 still count
    # digits/mlp is retired (pairs.RETIRED): its row stays, marked, and its KD gain does not carry the dataset
    assert mlp["retired"] and not checks["digits/resnet"]["retired"] and "| digits/mlp (retired) |" in lines[-1]
    swapped = [{**r, "kd_gain_ci": [-0.01, 0.01] if r["pair"] == "digits/resnet" else [0.001, 0.01]} for r in rows[1:3]]
    assert not any(c.get("kd_gain_ci_above_0", (0, 0))[1] for c in rel.target_checks([rows[0], *swapped]))
    # a teacher's table without the same recipe's none table has no KD figures: n/a, not a crash
    alone = rel.target_checks([{"pair": "digits/resnet", "recipe_id": v2, **base, **kd}])
    assert alone[0]["kd_gain_ci_above_0"] == (None, None) and "n/a" in rel.render_targets(alone)[2]
    # a sample (tier M) counts against the live cells its merge recorded; a merge that did not record them: n/a
    f2 = recipe_id_of("fashion-mnist", "v2")
    sample = {"pair": "fashion-mnist/none", "recipe_id": f2, **base, "cells_seeds_0_1": 64}
    (c,) = rel.target_checks([{**sample, "planned_live_cells": 497}])
    assert c["two_seeds_everywhere"] == (64, False) and "| 64 of 497 (sample): no |" in rel.render_targets([c])[2]
    (c,) = rel.target_checks([{**sample, "cells_seeds_0_1": 497, "planned_live_cells": 497}])
    assert c["two_seeds_everywhere"] == (497, True)
    (c,) = rel.target_checks([sample])
    assert c["two_seeds_everywhere"] == (64, None) and "| 64 (sample): n/a |" in rel.render_targets([c])[2]
