"""scripts/compare_teachers.py on the shipped tables: its paired differences are the tables' own."""

import importlib.util

import numpy as np
import polars as pl
import pytest

from danas_bench.core import space

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


def test_bootstrap_ci_and_a_missing_table():
    m, lo, hi = ct.bootstrap_ci(np.array([0.01, 0.02, 0.03, 0.04]))
    assert m == pytest.approx(0.025) and 0.01 <= lo < m < hi <= 0.04
    with pytest.raises(SystemExit, match="merge it first"):
        ct.seed_means("digits/vgg", "0123456789abcdef", [0])
