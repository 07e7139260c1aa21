"""scripts/compare_teachers.py on the shipped tables: its paired differences are the tables' own."""

import importlib.util

import numpy as np
import polars as pl
import pytest
from scipy import stats

from danas_bench.core import space
from danas_bench.reports import teacher_pairs

from conftest import REPO

spec = importlib.util.spec_from_file_location("compare_teachers", REPO / "scripts" / "compare_teachers.py")
ct = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ct)

RID = "fe374f6be0208d41"  # digits v2


def _seed_means(teacher: str, seeds: list[int]) -> dict[int, float]:
    """Computed here from the raw rows, independently of the script."""
    df = pl.read_parquet(REPO / "tables" / "digits" / f"{teacher}-{RID}.parquet").filter(pl.col("seed").is_in(seeds))
    g = df.group_by("arch_index").agg(pl.col("test_acc").mean(), pl.len()).filter(pl.col("len") == len(seeds))
    return dict(zip(g["arch_index"].to_list(), g["test_acc"].to_list()))


def test_the_paired_differences_are_the_tables_own(capsys):
    seeds = [0, 1, 2]
    assert ct.main(["digits", "vgg", "resnet", "--recipe", RID, "--seeds", "0", "1", "2"]) == 0
    out = capsys.readouterr().out
    vgg, res, none = (_seed_means(t, seeds) for t in ("vgg", "resnet", "none"))
    cells = sorted(c for c in vgg.keys() & res.keys() if not space.zero_cells(np.array([c]))[0])
    d = np.array([vgg[c] - res[c] for c in cells])
    top = sorted((c for c in cells if c in none), key=lambda c: (-none[c], c))[: len(cells) // 100]
    dt = np.array([vgg[c] - res[c] for c in top])
    assert f"{len(cells)} non-zero cells" in out
    assert f"all cells: A - B {100 * d.mean():+.2f} pp" in out and f"A better on {np.mean(d > 0):.0%}" in out
    assert f"top 1% by no-KD ({len(top)} cells): A - B {100 * dt.mean():+.2f} pp" in out
    assert f"best seed mean: A {100 * max(vgg[c] for c in cells):.2f}%" in out


def test_against_none_there_is_no_top_line_and_a_teacher_is_not_compared_with_itself(capsys):
    assert ct.main(["digits", "vgg", "none", "--recipe", RID]) == 0
    out = capsys.readouterr().out
    assert "all cells" in out and "top 1%" not in out  # the top is ranked by the no-KD table: not one side's own
    with pytest.raises(SystemExit):
        ct.main(["digits", "vgg", "vgg", "--recipe", RID])
    assert "two different teachers" in capsys.readouterr().err


def test_a_missing_table_says_how_to_make_it():
    with pytest.raises(SystemExit, match="merge it first"):
        ct.main(["digits", "vgg", "resnet", "--recipe", "0123456789abcdef"])


def test_every_two_teachers_of_a_dataset_are_compared_stronger_first():
    """docs/teachers.md's comparisons: one per two KD tables of a dataset and recipe, A the stronger teacher,
    each interval the t-interval of the paired differences computed here from the raw rows."""
    figures = [
        {"pair": f"digits/{t}", "recipe_id": RID, "seeds": [0, 1, 2], "teacher_margin": m, "best_seed_mean": 0.95}
        for t, m in (("resnet", 0.028), ("vgg", 0.038))
    ] + [{"pair": "digits/none", "recipe_id": RID, "seeds": [0, 1, 2]}]  # no teacher: not compared
    (row,) = teacher_pairs.shipped(figures)
    assert (row["a"], row["b"], row["cells"]) == ("vgg", "resnet", 6461)
    vgg, res = _seed_means("vgg", [0, 1, 2]), _seed_means("resnet", [0, 1, 2])
    cells = [c for c in sorted(vgg.keys() & res.keys()) if not space.zero_cells(np.array([c]))[0]]
    d = np.array([vgg[c] - res[c] for c in cells])
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert row["all"]["ci"] == pytest.approx((d.mean() - half, d.mean() + half))
    table = "\n".join(teacher_pairs.render([row]))
    assert f"| vgg (98.80) | resnet (97.80) | 0,1,2 | 6461 | {100 * d.mean():+.2f} [" in table


def test_a_sample_too_small_for_a_top_line_gets_none():
    """fashion-mnist's v1 sample (50 cells): its top 1% would be 0 cells, so only the all-cells line."""
    r = teacher_pairs.compare("fashion-mnist", "resnet", "mlp", "92500cf71c196591", [0, 1, 2])
    assert r["cells"] == 50 and "top" not in r and r["all"]["cells"] == 50
    r = teacher_pairs.compare("fashion-mnist", "resnet", "mlp", "60518831a5c26a41", [0, 1, 2])
    assert r["top"]["cells"] == teacher_pairs.MIN_TOP == 5  # 1% of 500
