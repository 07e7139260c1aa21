"""scripts/probe_recipe.py: a changed recipe's runs beside the shipped table's runs of the same cells."""

import importlib.util

import polars as pl
import pytest

from danas_bench.core.paths import table_path
from danas_bench.core.recipe import recipe_for
from danas_bench.reports.noise_sources import sample_cells
from danas_bench.reports.reliability import COLUMNS, table_figures

from conftest import REPO

spec = importlib.util.spec_from_file_location("probe_recipe", REPO / "scripts" / "probe_recipe.py")
pr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pr)


def test_the_probe_trains_the_changed_recipe_and_reads_the_table_for_the_served_one(capsys):
    assert pr.main(["digits", "epochs=3", "--cells", "6", "--teachers", "none"]) == 0
    out = capsys.readouterr().out
    served = recipe_for("digits")
    assert f"served {served.recipe_id} -> probe " in out and "{'epochs': 3}" in out
    cells = sample_cells(6)
    rows = pl.read_parquet(table_path("digits/none", served.recipe_id), columns=COLUMNS).filter(
        pl.col("arch_index").is_in(cells.tolist()) & pl.col("seed").is_in([0, 1])
    )
    assert rows.height == 12
    old = table_figures(rows)
    assert f"none: icc1 {old['icc1']:.2f} -> " in out
    # 3 epochs of a 30-epoch recipe: far from converged, and the probe says so
    late = float(out.split("late_gain ")[1].split(" -> ")[1].split(" pp")[0])
    assert late > 100 * old["late_gain"]


@pytest.mark.parametrize(
    ("bad", "says"),
    [("dataset=mnist1d", "field=value"), ("widht=8", "field=value"), ("epochs", "field=value"), ("epochs=2", "warmup")],
)
def test_a_change_that_is_not_a_recipe_field_is_refused(bad, says, capsys):
    with pytest.raises(SystemExit):
        pr.main(["digits", bad])
    assert says in capsys.readouterr().err
