"""A partial merge: the finished shards of a running generation become a usable, verifiable table."""

from __future__ import annotations

import pytest

from danas_bench.core import schema as tables
from danas_bench.core.paths import shard_dir
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
    assert verify(tables_root, log=lambda *a: None) == []
    # finishing the last shard and merging again gives the complete table, no longer partial
    generate.run_shard(str(d), plan.to_json(), 1, 8)
    out = generate.merge(plan, d, tables_root, log=lambda *a: None)
    assert not tables.read_meta(out)["partial"] and tables.read(out).num_rows == 24
    assert verify(tables_root, log=lambda *a: None) == []
