"""A partial merge: the finished shards of a running generation become a usable, verifiable table."""

from __future__ import annotations

import math

import pytest

from danas_bench.core import schema as tables
from danas_bench.core import space
from danas_bench.core.paths import shard_dir, shard_path
from danas_bench.core.recipe import KD, Recipe
from danas_bench.tables import generate
from danas_bench.tables.manifest import load_manifest, verify
from danas_bench.tables.plan import make_plan, save_plan


def test_partial_merge_then_complete(tables_root):
    recipe = Recipe(dataset="digits", width=4, epochs=1, batch_size=32, n_train=100)
    plan = make_plan("digits/none", recipe, KD("none"), seeds=[0], archs=24, shard_size=8)
    d = shard_dir("digits/none", recipe.recipe_id, tables_root)
    plan = save_plan(plan, d)
    for sid in (0, 2):
        generate.run_shard(str(d), plan.to_json(), sid, 8)
    with pytest.raises(tables.TableError, match="partial=true"):
        generate.merge(plan, d, tables_root, log=lambda *a: None)
    out = generate.merge(plan, d, tables_root, log=lambda *a: None, partial=True)
    meta = tables.read_meta(out)
    assert meta["partial"] and meta["shards"] == [0, 2] and meta["coverage"] == pytest.approx(16 / 24, abs=1e-3)
    got = set(tables.read(out).column("arch_index").to_pylist())
    assert got == set(plan.shards[0]["archs"]) | set(plan.shards[2]["archs"])
    entry = next(iter(load_manifest(tables_root)["files"].values()))
    assert entry["partial"] and entry["rows"] == 16
    # the plan's live cells (what "two seeds on every cell" counts against), not those merged so far
    planned = sorted({a for s in plan.shards for a in s["archs"]})
    assert entry["live_cells"] == int((~space.zero_cells(planned)).sum()) == generate.live_cells(plan)
    assert verify(tables_root, log=lambda *a: None) == []
    # merging the same shards again leaves the table as it is (its expected file stays fitted on it)
    stamp, logged = (out.stat().st_mtime_ns, out.read_bytes()), []
    assert generate.merge(plan, d, tables_root, log=logged.append, partial=True) == out
    assert (out.stat().st_mtime_ns, out.read_bytes()) == stamp and "nothing to merge" in logged[0]
    # finishing the last shard and merging again gives the complete table, no longer partial
    generate.run_shard(str(d), plan.to_json(), 1, 8)
    out = generate.merge(plan, d, tables_root, log=lambda *a: None)
    assert not tables.read_meta(out)["partial"] and tables.read(out).num_rows == 24
    assert verify(tables_root, log=lambda *a: None) == []
    # a table that no longer matches its MANIFEST checksum is merged again, not trusted
    out.write_bytes(out.read_bytes()[:-20])
    logged = []
    generate.merge(plan, d, tables_root, log=logged.append)
    assert logged[0].startswith("merged 3 of 3 shards") and verify(tables_root, log=lambda *a: None) == []


def test_progress_counts_the_shards_and_sees_a_stale_merge(tables_root):
    """`danas-bench progress` reads a running generation: shards and rows done per seed, the core-seconds
    its shards recorded, whether the merged table is behind; a damaged shard is named, not counted."""
    from danas_bench.tables import progress

    recipe = Recipe(dataset="digits", width=4, epochs=1, batch_size=32, n_train=100)
    plan = make_plan("digits/none", recipe, KD("none"), seeds=[0, 1], archs=16, shard_size=8)
    d = shard_dir("digits/none", recipe.recipe_id, tables_root)
    plan = save_plan(plan, d)
    assert [s["seed"] for s in plan.shards] == [0, 0, 1, 1]
    generate.run_shard(str(d), plan.to_json(), 0, 8)
    (r,) = progress.collect(tables_root)
    assert (r["done"], r["shards"], r["rows_done"], r["rows"]) == (1, 4, 8, 32)
    assert r["seeds"] == {
        0: {"shards": 2, "done": 1, "rows": 16, "rows_done": 8},
        1: {"shards": 2, "done": 0, "rows": 16, "rows_done": 0},
    }
    spent = sum(tables.read(shard_path(d, 0)).column("train_seconds").to_pylist())
    assert r["core_hours_spent"] == pytest.approx(spent / 3600)
    assert r["core_hours_left"] == pytest.approx(3 * spent / 3600)  # 24 rows left at the recorded rate
    assert "not merged" in progress.render([r], workers=2)[2]
    generate.merge(plan, d, tables_root, log=lambda *a: None, partial=True)
    assert "8 rows, current (partial)" in progress.render(progress.collect(tables_root), workers=2)[2]
    generate.run_shard(str(d), plan.to_json(), 2, 8)
    shard_path(d, 3).write_bytes(b"not parquet")  # a torn write: generate reruns it
    (r,) = progress.collect(tables_root, recipe.recipe_id)
    assert r["done"] == 2 and r["seeds"][1]["done"] == 1 and len(r["bad"]) == 1 and "shard-00003" in r["bad"][0]
    lines = progress.render([r], workers=2)
    assert "behind the shards: merge again" in lines[2] and "shard-00003" in lines[3]
    assert lines[-1].startswith("Left in all: ") and "no rate yet" not in lines[-1]
    assert progress.collect(tables_root, "0123456789abcdef") == []  # another recipe's generations only
    shard_path(d, 3).unlink()
    generate.merge(plan, d, tables_root, log=lambda *a: None, partial=True)  # shards 0 and 2: 16 rows
    shard_path(d, 2).unlink()  # lost after the merge: merging again would shrink the table
    assert "16 rows, ahead of the shards" in progress.render(progress.collect(tables_root), workers=2)[2]


def test_progress_estimates_a_pair_without_shards_at_its_siblings_rate(tables_root):
    """A round-robin generation's pairs of one recipe train the same students: a pair with no finished
    shard is estimated at its siblings' core-seconds per row (marked), a recipe with none done is not."""
    from danas_bench.tables import progress

    recipe = Recipe(dataset="digits", width=4, epochs=1, batch_size=32, n_train=100)
    other = Recipe(dataset="digits", width=4, epochs=2, batch_size=32, n_train=100)
    plans = {
        (pair, r.recipe_id): save_plan(
            make_plan(pair, r, KD(pair.split("/")[1]), seeds=[0], archs=16, shard_size=8),
            shard_dir(pair, r.recipe_id, tables_root),
        )
        for pair, r in [("digits/none", recipe), ("digits/resnet", recipe), ("digits/none", other)]
    }
    d = shard_dir("digits/none", recipe.recipe_id, tables_root)
    generate.run_shard(str(d), plans["digits/none", recipe.recipe_id].to_json(), 0, 8)
    spent = sum(tables.read(shard_path(d, 0)).column("train_seconds").to_pylist()) / 3600
    rows = {(r["pair"], r["recipe_id"]): r for r in progress.collect(tables_root)}
    sibling = rows["digits/resnet", recipe.recipe_id]
    assert sibling["rows_done"] == 0 and sibling["rate_from"] == ["digits/none"]
    assert sibling["core_hours_left"] == pytest.approx(2 * spent)  # 16 rows at the none pair's 8-row rate
    assert rows["digits/none", recipe.recipe_id]["rate_from"] == []  # its own rate
    assert math.isnan(rows["digits/none", other.recipe_id]["core_hours_left"])  # another recipe: no rate
    lines = progress.render(list(rows.values()), workers=2)
    (line,) = [x for x in lines if x.startswith("| digits/resnet")]
    assert f"| {2 * spent:.1f}* | {spent:.1f}* |" in line
    assert lines[-1] == (
        f"Left in all: {3 * spent:.1f} core-h, {1.5 * spent:.1f} wall h at 2 workers (not counted, no rate yet: "
        "digits/none); * no finished shard yet, estimated at the rate of a pair of the same recipe "
        "(digits/resnet at digits/none's)."
    )


def test_progress_command_prints_the_table_and_says_what_is_missing(tables_root, tmp_path, capsys):
    from danas_bench import cli

    recipe = Recipe(dataset="digits", width=4, epochs=1, batch_size=32, n_train=100)
    plan = save_plan(
        make_plan("digits/none", recipe, KD("none"), seeds=[0], archs=8, shard_size=8),
        shard_dir("digits/none", recipe.recipe_id, tables_root),
    )
    generate.run_shard(str(shard_dir("digits/none", recipe.recipe_id, tables_root)), plan.to_json(), 0, 8)
    assert cli.main(["progress", f"root={tables_root}", "workers=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| pair | recipe | shards done") and "wall h left at 2 workers" in out[0]
    assert out[2].startswith(f"| digits/none | `{recipe.recipe_id}` | 1/1 | 0: 1/1 |") and "not merged" in out[2]
    assert cli.main(["progress", f"root={tmp_path}"], one_line_errors=True) == 2
    assert "no generation under tables/shards/" in capsys.readouterr().err
    assert cli.main(["progress", f"root={tables_root}", "recipe_id=v9"], one_line_errors=True) == 2
    err = capsys.readouterr().err
    assert "no generation of recipe 'v9'" in err and recipe.recipe_id in err
