"""The expected-accuracy view: cross-fitting, isomorphism, verification, no live training.

Everything runs on copies of the shipped digits tables in ``tmp_path`` (never the repository's
``tables/``), with fast candidates (ridge, a small gradient-boosting model) so a fit takes seconds.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.query import bench as bm
from danas_bench.reports import expected as ex
from danas_bench.tables.manifest import load_manifest, update_manifest, verify

from conftest import REPO, danas_env

SHIPPED = REPO / "tables"
RIDGE = {"ridge_paths": {"model": "ridge", "features": "paths", "params": {"alphas": [1.0, 10.0]}}}
SMALL_HGB = {"model": "hgb", "features": "onehot", "params": {"max_iter": 30, "max_leaf_nodes": 7}}


def _copy_pairs(root, pairs):
    """Copy the shipped tables of ``pairs`` and their MANIFEST entries into ``root``."""
    man = json.loads((SHIPPED / "MANIFEST").read_text())
    files = {}
    for pair in pairs:
        ds, teacher = pair.split("/")
        for rel, entry in man["files"].items():
            if entry.get("kind") == "table" and entry.get("pair") == pair:
                (root / ds).mkdir(parents=True, exist_ok=True)
                shutil.copy2(SHIPPED / rel, root / rel)
                files[rel] = entry
    if not files:
        pytest.skip(f"no shipped tables for {pairs}")
    (root / "MANIFEST").write_text(json.dumps({"manifest_version": man.get("manifest_version", 1), "files": files}))
    return root


@pytest.fixture
def digits_root(tmp_path, monkeypatch):
    root = _copy_pairs(tmp_path / "tables", ["digits/none", "digits/resnet"])
    (tmp_path / "cache").mkdir()
    for k, v in danas_env(root, tmp_path / "cache").items():
        monkeypatch.setenv(k, v)
    return root


def _rows(root, pair="digits/none", metric="test_acc"):
    return ex._rows(bm.open(pair, root, fallback="error").path, metric)


def _multi_seed_archs(arch, seed) -> int:
    """Architectures recorded with two or more seeds, counted from the rows (v1: the 10% noise sample; v2:
    every architecture)."""
    _, counts = np.unique(arch, return_counts=True)
    assert len(set(seed.tolist())) >= 3  # both shipped digits versions hold seeds 0, 1 and 2
    return int((counts >= 2).sum())


@pytest.mark.parametrize("spec", [RIDGE["ridge_paths"], SMALL_HGB], ids=["ridge", "hgb"])
def test_cross_fit_never_uses_own_rows(digits_root, spec):
    """Perturbing one architecture's rows leaves its own estimate unchanged (its fold model never saw
    them) while it moves the estimates of architectures whose models did see them."""
    a, s, y = _rows(digits_root)
    multi = np.unique(a[s == 1])
    for c in (int(multi[0]), int(multi[len(multi) // 2])):
        base = ex.cross_fit(a, y, spec)
        y2 = y.copy()
        y2[a == c] += 0.5
        moved = ex.cross_fit(a, y2, spec)
        assert moved[c] == base[c]
        iso = np.nonzero(space.canonical_table() == c)[0]
        assert (moved[iso] == base[c]).all()
        assert (moved != base).sum() > 1000  # the perturbation reached the other folds' models


def test_folds_depend_on_the_set_only(digits_root):
    a, s, y = _rows(digits_root)
    f = ex.folds_of(a, 5, 0)
    assert set(f.tolist()) == set(range(5))
    for c in np.unique(a)[:50]:  # every row of an architecture sits in one fold
        assert len(set(f[a == c].tolist())) == 1
    assert (ex.folds_of(a[::-1], 5, 0) == f[::-1]).all()


def test_command_writes_a_verified_table_that_queries_read(digits_root, tmp_path):
    from danas_bench.cli import main

    docs = tmp_path / "docs"
    assert main(["expected", "pair=digits/resnet", "model=ridge_paths", f"out_dir={docs}"]) == 0
    b = bm.open("digits/resnet", digits_root, fallback="error")
    path = ex.expected_path(b.path)
    entry = load_manifest(digits_root)["files"][f"digits/{path.name}"]
    assert entry["kind"] == "expected" and entry["sha256"] == tb.sha256(path) and entry["rows"] == space.N_ARCHS
    assert verify(digits_root) == []
    meta = tb.read_meta(path)
    assert meta["model"] == "ridge_paths" and meta["source_sha256"] == tb.sha256(b.path)
    assert set(meta["metrics"]) == {"valid_acc", "test_acc", "valid_kd_gain", "test_kd_gain"}
    v = meta["validation"]["test_acc"]["ridge_paths"]
    a, s, _ = _rows(digits_root, "digits/resnet")
    assert v["archs"] == _multi_seed_archs(a, s) and v["held_out_seeds"] == sorted(set(s.tolist()))
    assert "digits/resnet" in (docs / "expected.md").read_text()

    t = tb.read(path)
    est = {m: t.column(m).to_numpy().astype(np.float64) for m in meta["metrics"]}
    canon = space.canonical_table()
    for arr in est.values():  # isomorphic architectures share one value: their canonical one's
        assert np.isfinite(arr).all() and (arr == arr[canon]).all()
    assert b.query(space.EXAMPLE, "valid_acc", seed="expected") == est["valid_acc"][space.to_index(space.EXAMPLE)]
    assert (b.query_many(np.arange(space.N_ARCHS), "valid_acc", seed="expected") == est["valid_acc"]).all()
    assert (b.test_many(range(100), "test_acc", seed="expected") == est["test_acc"][:100]).all()
    assert b.test(7, "test_kd_gain", seed="expected") == est["test_kd_gain"][7]
    arch, value = b.best("test_acc", seed="expected")
    assert value == est["test_acc"][b.archs].max() and arch in set(b.archs.tolist())
    with pytest.raises(ValueError, match="test_acc"):
        b.query(0, "test_acc", seed="expected")  # searchers see validation metrics only
    with pytest.raises(ValueError, match="final metrics only"):
        b.query(0, "valid_acc", epoch=1, seed="expected")


def test_expected_queries_never_train_live(digits_root, monkeypatch):
    """A missing file is an error naming the command; a present one answers every index (also the
    non-canonical ones the table has no row for) without any training, even with fallback='live'."""
    b = bm.open("digits/none", digits_root, fallback="live")

    def no_training(*args, **kwargs):
        raise AssertionError("an expected query trained live")

    monkeypatch.setattr(bm.Bench, "_live", no_training)
    with pytest.raises(tb.TableError, match="danas-bench expected pair=digits/none"):
        b.query(0, "valid_acc", seed="expected")
    ex.fit_pair("digits/none", digits_root, candidates=RIDGE, log=lambda *_: None)
    b = bm.open("digits/none", digits_root, fallback="live")
    vals = b.query_many(np.arange(space.N_ARCHS), "valid_acc", seed="expected")
    assert np.isfinite(vals).all()
    assert [b.query(i, "valid_acc", seed="expected") for i in (0, 1, 15624)] == vals[[0, 1, 15624]].tolist()


def test_damaged_or_stale_expected_file_is_refused(digits_root):
    ex.fit_pair("digits/none", digits_root, candidates=RIDGE, log=lambda *_: None)
    b = bm.open("digits/none", digits_root, fallback="error")
    path = ex.expected_path(b.path)
    man = json.loads((digits_root / "MANIFEST").read_text())
    rel = f"digits/{path.name}"
    good = man["files"][rel]["sha256"]
    man["files"][rel]["sha256"] = "0" * 64
    (digits_root / "MANIFEST").write_text(json.dumps(man))
    with pytest.raises(tb.TableError, match="MANIFEST"):
        bm.open("digits/none", digits_root, fallback="error").query(0, "valid_acc", seed="expected")
    man["files"][rel]["sha256"] = good
    (digits_root / "MANIFEST").write_text(json.dumps(man))
    other = digits_root.parent / "other"  # the table one row shorter: another version, another sha256
    other.mkdir()
    table = tb.read(b.path)
    tb.write_atomic(table.slice(0, table.num_rows - 1), other / b.path.name)
    shutil.copy2(path, ex.expected_path(other / b.path.name))
    with pytest.raises(tb.TableError, match="another version"):
        ex.load(other / b.path.name, "digits/none")
    update_manifest(other / b.path.name, other, kind="table", extra={"pair": "digits/none"})
    update_manifest(ex.expected_path(other / b.path.name), other, kind="expected", extra={"pair": "digits/none"})
    assert any("fitted on another version" in p for p in verify(other, log=lambda *_: None))


def test_a_fit_on_the_same_tables_and_settings_is_kept(digits_root):
    """Refitting is skipped only where the estimates would not change: the same table and `none` table
    (by checksum), candidates and folds; any of them changed, or force=True, fits again."""
    quiet = lambda *_: None  # noqa: E731
    first = ex.fit_pair("digits/resnet", digits_root, candidates=RIDGE, log=quiet)
    path = ex.expected_path(bm.open("digits/resnet", digits_root, fallback="error").path)
    stamp, logged = path.stat().st_mtime_ns, []
    assert ex.fit_pair("digits/resnet", digits_root, candidates=RIDGE, log=logged.append) == first
    assert path.stat().st_mtime_ns == stamp and "nothing to fit" in logged[0]
    ex.fit_pair("digits/resnet", digits_root, candidates=RIDGE, folds=4, log=quiet)  # other settings: refit
    assert path.stat().st_mtime_ns != stamp and tb.read_meta(path)["folds"] == 4
    stamp = path.stat().st_mtime_ns
    ex.fit_pair("digits/resnet", digits_root, candidates=RIDGE, folds=4, log=quiet, force=True)
    assert path.stat().st_mtime_ns != stamp
    none_path = bm.open("digits/none", digits_root, fallback="error").path
    table = tb.read(none_path)
    tb.write_atomic(table.slice(0, table.num_rows - 1), none_path)  # another version of the `none` table
    update_manifest(none_path, digits_root, kind="table", extra={"pair": "digits/none"})
    stamp = path.stat().st_mtime_ns
    ex.fit_pair("digits/resnet", digits_root, candidates=RIDGE, folds=4, log=quiet)
    assert path.stat().st_mtime_ns != stamp and verify(digits_root, log=quiet) == []


def test_validation_on_real_rows(digits_root):
    """The leave-one-seed-out figures: one seed per held-out seed, (c) is the mean of the others."""
    a, s, y = _rows(digits_root)
    est = ex.cross_fit(a, y, RIDGE["ridge_paths"])
    v = ex.validate(a, s, y, est)
    assert v["archs"] == _multi_seed_archs(a, s) and v["held_out_seeds"] == [0, 1, 2]
    for name in ("single", "expected", "others_mean"):
        assert -1 <= v[name]["kendall"] <= 1 and v[name]["mae"] > 0 and 0 <= v[name]["top5"] <= 1
    two = np.isin(s, [0, 1])  # with two seeds the mean of the others is the one other seed
    v2 = ex.validate(a[two], s[two], y[two], est)
    assert v2["single"] == v2["others_mean"]


def test_kd_gain_estimates_follow_the_none_table(digits_root):
    """The KD gain is fitted on the KD table minus the `none` table: a `none` table changed after the fit
    makes the estimates stale (refused, naming the command), and a damaged one stops the fit instead of
    silently dropping the KD-gain metrics."""
    ex.fit_pair("digits/resnet", digits_root, candidates=RIDGE, log=lambda *_: None)
    none_path = bm.open("digits/none", digits_root, fallback="error").path
    table = tb.read(none_path)
    tb.write_atomic(table.slice(0, table.num_rows - 1), none_path)  # another version of the `none` table
    update_manifest(none_path, digits_root, kind="table", extra={"pair": "digits/none"})
    b = bm.open("digits/resnet", digits_root, fallback="error")
    with pytest.raises(tb.TableError, match=r"KD-gain estimates .*danas-bench expected pair=digits/resnet"):
        b.query(0, "valid_acc", seed="expected")
    stale = [p for p in verify(digits_root, log=lambda *_: None) if "resnet" in p and "expected" in p]
    assert stale and "fitted on another version of none-" in stale[0], stale
    data = bytearray(none_path.read_bytes())  # now damaged: its bytes no longer match the MANIFEST
    data[len(data) // 2] ^= 0x01
    none_path.write_bytes(bytes(data))
    with pytest.raises(tb.TableError, match="MANIFEST"):
        ex.fit_pair("digits/resnet", digits_root, candidates=RIDGE, log=lambda *_: None)


def test_expected_files_of_two_recipes_of_one_pair_are_both_reported(digits_root, tmp_path):
    """v1 and v2 tables of one pair each get their own expected file and their own rows in the docs."""
    recipes = sorted({m["recipe_id"] for m in _table_metas(digits_root, "digits/none")})
    if len(recipes) < 2:
        pytest.skip("the shipped tables hold one recipe of digits/none")
    assert ex.pairs_of("all", digits_root, "v2") == ["digits/none", "digits/resnet"]  # `expected pair=all recipe_id=v2`
    assert ex.pairs_of("all", digits_root, "v9") == []
    for r in recipes:
        ex.fit_pair("digits/none", digits_root, candidates=RIDGE, recipe_id=r, log=lambda *_: None)
    metas = ex.collect(digits_root)
    assert [(m["pair"], m["recipe_id"]) for m in metas] == [("digits/none", r) for r in recipes]
    md = ex.write_docs(digits_root, tmp_path / "docs").read_text()
    for r in recipes:
        assert f"| digits/none | `{r}` | test_acc | ridge_paths |" in md
    for r in recipes:  # each recipe's table reads its own estimates
        b = bm.open("digits/none", digits_root, fallback="error", recipe_id=r)
        assert tb.read_meta(ex.expected_path(b.path))["source_sha256"] == tb.sha256(b.path)


def _table_metas(root, pair):
    man = load_manifest(root)["files"]
    return [tb.read_meta(root / rel) for rel, e in man.items() if e.get("kind") == "table" and e.get("pair") == pair]
