"""scripts/compare_teachers.py on the shipped tables: its paired differences are the tables' own."""

import importlib.util

import numpy as np
import polars as pl
import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("compare_teachers", REPO / "scripts" / "compare_teachers.py")
ct = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ct)

RID = "fe374f6be0208d41"  # digits v2


def test_a_teacher_against_itself_differs_by_nothing(capsys):
    assert ct.main(["digits", "vgg", "vgg", "--recipe", RID]) == 0
    out = capsys.readouterr().out
    assert "all cells: +0.00 pp [+0.00, +0.00], A better on 0%" in out and "6461 non-zero cells" in out


def test_the_paired_difference_is_the_difference_of_seed_means():
    seeds = [0, 1, 2]
    a, b = ct.seed_means("digits/vgg", RID, seeds), ct.seed_means("digits/resnet", RID, seeds)
    both = a.join(b, on="arch_index")
    raw = {
        t: pl.read_parquet(REPO / "tables" / "digits" / f"{t}-{RID}.parquet").filter(pl.col("seed").is_in(seeds))
        for t in ("vgg", "resnet")
    }
    cell = int(both["arch_index"][17])
    want = {t: raw[t].filter(pl.col("arch_index") == cell)["test_acc"].mean() for t in raw}
    row = both.filter(pl.col("arch_index") == cell)
    assert row["digits/vgg"][0] == pytest.approx(want["vgg"])
    assert row["digits/resnet"][0] == pytest.approx(want["resnet"])
    m, lo, hi = ct.bootstrap_ci(np.array([0.01, 0.02, 0.03, 0.04]))
    assert m == pytest.approx(0.025) and 0.01 <= lo < m < hi <= 0.04


def test_a_missing_table_says_how_to_make_it():
    with pytest.raises(SystemExit, match="merge it first"):
        ct.seed_means("digits/vgg", "0123456789abcdef", [0])
