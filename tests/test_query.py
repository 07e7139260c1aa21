"""Tests of the query API (danas_bench.query.bench, .budget, .overlay) on small, really trained tables.

A module fixture trains two tiny digits tables (12 architectures of ``digits/resnet`` with a second
seed on 3 of them, and 4 architectures of ``digits/none``) with a tiny recipe, in-process, in a
temporary tables root; the live-fallback tests train single architectures with the same recipe.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import numpy as np
import polars as pl
import pytest
import torch

import danas_bench as db

# (no torch-importing module at the top: the spawned writer processes import this file)
from danas_bench import cli
from danas_bench.core import space
from danas_bench.core.paths import shard_dir
from danas_bench.core.recipe import KD, Recipe
from danas_bench.query.bench import MissingRecord
from danas_bench.query.overlay import Overlay
from danas_bench.tables import generate as g
from danas_bench.tables.plan import Plan, make_plan, save_plan

from conftest import danas_env, make_tables_root

PAIR = "digits/resnet"
RECIPE = Recipe(dataset="digits", width=4, epochs=2, batch_size=32, n_train=128)
RID = RECIPE.recipe_id
N_ARCHS = 12


@pytest.fixture(scope="module")
def qroot(tmp_path_factory):
    base = tmp_path_factory.mktemp("query")
    root = make_tables_root(base / "tables", datasets=("digits",))
    from danas_bench.tables import archinfo

    quiet = lambda *a, **k: None  # noqa: E731
    with pytest.MonkeyPatch.context() as m:
        for k, v in danas_env(root, base / "cache").items():
            m.setenv(k, v)
        for pair, n, noise in ((PAIR, N_ARCHS, [1]), ("digits/none", 4, [])):
            plan = make_plan(
                pair,
                RECIPE,
                KD(pair.split("/")[1]),
                seeds=[0],
                archs=n,
                noise_seeds=noise,
                noise_fraction=0.25,
                shard_size=16,
            )
            d = shard_dir(pair, RID, root)
            save_plan(plan, d)
            g.run_pending(plan, d, executor="debug", chunk=16, log=quiet)
            g.merge(plan, d, root, log=quiet)
        first = sorted(Plan.from_json((shard_dir(PAIR, RID, root) / "plan.json").read_text()).shards[0]["archs"])
        archinfo.build_file(RECIPE, root, indices=first[:2], log=quiet)
    return root


@pytest.fixture
def cache(qroot, tmp_path, monkeypatch):
    """$DANAS_TABLES -> the module's tables, $DANAS_CACHE -> a fresh folder (an empty overlay)."""
    c = tmp_path / "cache"
    for k, v in danas_env(qroot, c).items():
        monkeypatch.setenv(k, v)
    return c


@pytest.fixture
def bench(cache):
    return db.open(PAIR, fallback="error")


@pytest.fixture
def frame(bench):
    return bench.frame()


def _noisy(bench) -> list[int]:
    f = bench.frame()
    return sorted(f.filter(pl.col("seed") == 1)["arch_index"].to_list())


def _not_in_table(bench) -> int:
    have = set(bench.archs.tolist())
    return next(int(a) for a in space.canonical_indices() if int(a) not in have and not space.is_zero_cell(int(a)))


def _alias(c: int) -> int | None:
    """A non-canonical index whose canonical architecture is ``c`` (None if ``c`` has no alias)."""
    others = np.nonzero(space.canonical_table() == c)[0]
    others = others[others != c]
    return int(others[0]) if len(others) else None


# --- opening -------------------------------------------------------------------------------------------


def test_open_attributes(bench, frame):
    assert bench.pair == PAIR and bench.dataset == "digits" and bench.teacher == "resnet"
    assert bench.recipe == RECIPE and bench.recipe_id == RID
    assert bench.seeds == [0, 1]
    assert isinstance(bench.archs, np.ndarray) and len(bench.archs) == N_ARCHS
    assert list(bench.archs) == sorted(frame["arch_index"].unique().to_list())
    assert all(space.canonical(int(a)) == int(a) for a in bench.archs)


def test_open_unknown_pair_lists_pairs_present(cache):
    for bad in ("digits/mlp", "cifar10/resnet", "digits"):
        with pytest.raises(ValueError) as e:
            db.open(bad)
        assert "digits/none" in str(e.value) and PAIR in str(e.value)
    with pytest.raises(ValueError, match="fallback"):
        db.open(PAIR, fallback="maybe")


def test_open_all(cache):
    benches = db.open_all()
    assert sorted(benches) == ["digits/none", PAIR]
    assert all(isinstance(b, db.Bench) for b in benches.values())


# --- queries -------------------------------------------------------------------------------------------


def test_every_input_form(bench):
    for a in bench.archs[:4]:
        a = int(a)
        ops = space.to_ops(a)
        forms = [
            a,
            np.int64(a),
            np.int32(a),
            space.arch_str(a),
            list(ops),
            tuple(ops),
            [space.OPS[o] for o in ops],
            np.array(ops),
        ]
        vals = {bench.query(f, seed=0) for f in forms}
        assert len(vals) == 1
    # an isomorphic, non-canonical index answers through its canonical architecture
    c = next(int(a) for a in bench.archs if _alias(int(a)) is not None)
    alias = _alias(c)
    assert bench.query(alias, seed=0) == bench.query(c, seed=0)
    assert bench.query(space.arch_str(alias), seed="mean") == bench.query(c, seed="mean")
    assert bench.test(alias) == bench.test(c)
    np.testing.assert_array_equal(bench.query_many([alias, c], seed=0), [bench.query(c, seed=0)] * 2)


def test_values_match_the_table(bench, frame):
    rows = frame.filter(pl.col("seed") == 0)
    for r in rows.iter_rows(named=True):
        a = r["arch_index"]
        assert bench.query(a, seed=0) == pytest.approx(r["valid_acc"], abs=0)
        assert bench.query(a, "valid_loss", seed=0) == r["valid_loss"]
        assert bench.query(a, "valid_acc", epoch=1, seed=0) == r["valid_acc_curve"][0]
        assert bench.query(a, "valid_acc_curve", epoch=2, seed=0) == r["valid_acc_curve"][1]
        assert bench.query(a, "train_loss", epoch=1, seed=0) == r["train_loss"][0]
        assert bench.query(a, "train_acc", seed=0) == r["train_acc"][-1]
        assert bench.query(a, "train_seconds", seed=0) == r["train_seconds"]
        assert bench.test(a, seed=0) == r["test_acc"]
        np.testing.assert_array_equal(bench.curve(a, seed=0), r["valid_acc_curve"])
        rec = bench.record(a)
        assert rec["source"] == "table" and rec["valid_acc"] == r["valid_acc"] and set(rec) == set(frame.columns)
    for a in _noisy(bench):
        both = frame.filter(pl.col("arch_index") == a).sort("seed")
        assert both.height == 2
        assert bench.query(a, seed=1) == both["valid_acc"][1]
        assert bench.query(a, seed="mean") == pytest.approx(both["valid_acc"].mean(), rel=1e-12)
        assert bench.test(a) == pytest.approx(both["test_acc"].mean(), rel=1e-12)
        assert bench.cost(a) == pytest.approx(both["train_seconds"].mean(), rel=1e-12)


def test_seed_none_samples_recorded_seeds_only(bench, frame):
    a = _noisy(bench)[0]
    vals = set(frame.filter(pl.col("arch_index") == a)["valid_acc"].to_list())
    draws = [bench.query(a, rng=np.random.default_rng(s)) for s in range(40)]
    assert set(draws) == vals  # both seeds come up, nothing else
    seq1 = [bench.query(a, rng=r) for r in [np.random.default_rng(7)] for _ in range(20)]
    seq2 = [bench.query(a, rng=r) for r in [np.random.default_rng(7)] for _ in range(20)]
    assert seq1 == seq2
    single = next(int(x) for x in bench.archs if int(x) not in _noisy(bench))
    assert {bench.query(single) for _ in range(10)} == {bench.query(single, seed=0)}
    many = bench.query_many(bench.archs, seed=None, rng=np.random.default_rng(0))
    for x, v in zip(bench.archs, many):
        assert v in set(frame.filter(pl.col("arch_index") == int(x))["valid_acc"].to_list())


def test_missing_seed_is_never_backfilled(bench):
    single = next(int(x) for x in bench.archs if int(x) not in _noisy(bench))
    with pytest.raises(MissingRecord, match=r"recorded seeds: \[0\]"):
        bench.query(single, seed=1)
    with pytest.raises(MissingRecord, match="fallback='live'"):
        bench.query(_not_in_table(bench))
    with pytest.raises(MissingRecord):
        bench.query_many([single], seed=1)
    with pytest.raises(MissingRecord):
        bench.query(single, kd_temperature=2.0)


def test_clear_errors(bench):
    a = int(bench.archs[0])
    with pytest.raises(ValueError, match="unknown metric 'acc'.*valid_acc, valid_acc_curve"):
        bench.query(a, "acc")
    with pytest.raises(ValueError, match=r"test metric.*bench\.test\(\)"):
        bench.query(a, "test_acc")
    with pytest.raises(ValueError, match=r"test metric"):
        bench.query_many([a], "test_loss")
    with pytest.raises(ValueError, match=r"epoch 3 is out of range.*valid epochs: 1\.\.2"):
        bench.query(a, epoch=3)
    with pytest.raises(ValueError, match=r"epoch 0 is out of range"):
        bench.query(a, epoch=0)
    with pytest.raises(ValueError, match="last epoch only; per-epoch metrics: valid_acc"):
        bench.query(a, "valid_loss", epoch=1)
    assert bench.query(a, "valid_loss", epoch=2, seed=0) == bench.query(a, "valid_loss", seed=0)
    with pytest.raises(ValueError, match=r"nor_conv_3x3~0\|\+"):  # the space module's example
        bench.query("|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ValueError, match="out of range"):
        bench.query(space.N_ARCHS)
    with pytest.raises(ValueError, match="6 op names"):
        bench.query(["none", "none"])
    with pytest.raises(ValueError, match="seed must be None.*'mean' or an int"):
        bench.query(a, seed="all")
    with pytest.raises(ValueError, match="unknown curve"):
        bench.curve(a, "test_acc")
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        bench.test(a, "accuracy")
    with pytest.raises(ValueError, match="architecture fact"):
        bench.query(a, "flops")
    with pytest.raises(ValueError, match="single str"):
        bench.query_many(space.arch_str(a))


def test_query_many(bench):
    archs = bench.archs
    np.testing.assert_array_equal(bench.query_many(archs, seed=0), [bench.query(int(a), seed=0) for a in archs])
    np.testing.assert_array_equal(
        bench.query_many(archs, seed="mean"), [bench.query(int(a), seed="mean") for a in archs]
    )
    np.testing.assert_array_equal(
        bench.query_many([space.arch_str(int(a)) for a in archs], "train_loss", epoch=1, seed=0),
        [bench.query(int(a), "train_loss", epoch=1, seed=0) for a in archs],
    )
    np.testing.assert_array_equal(bench.test_many(archs), [bench.test(int(a)) for a in archs])
    assert bench.query_many([]).shape == (0,)
    # every index of the space whose canonical architecture is in the table
    covered = np.nonzero(np.isin(space.canonical_table(), archs))[0]
    vals = bench.query_many(covered, seed=0)
    assert np.isfinite(vals).all() and len(vals) == len(covered) > len(archs)


def test_budget(bench):
    a, b = int(bench.archs[0]), int(bench.archs[1])
    budget = db.Budget(max_queries=2)
    bench.query(a, budget=budget)
    bench.query(b, budget=budget, epoch=1)
    assert budget.spent_queries == 2
    assert budget.spent_seconds == pytest.approx(bench.cost(a) + bench.cost(b) / 2)
    assert bench.cost(b, epoch=1) == pytest.approx(bench.cost(b) / 2)
    with pytest.raises(db.BudgetExhausted, match="budget exhausted"):
        bench.query(a, budget=budget)
    assert budget.spent_queries == 2 and budget.remaining() == 0.0 and budget.exhausted
    bench.test(a)
    bench.test_many(bench.archs)  # the leaderboard's calls are never charged (no budget argument)

    budget = db.Budget(max_seconds=1.5 * bench.cost(a))
    bench.query(a, budget=budget)
    assert 0 < budget.remaining() < 1
    with pytest.raises(db.BudgetExhausted):
        bench.query(a, budget=budget, seed="mean")
    assert budget.spent_queries == 1 and budget.spent_seconds == pytest.approx(bench.cost(a))
    bench.query(a, budget=budget, epoch=1, seed=0)  # half the cost still fits
    assert budget.spent_queries == 2

    budget = db.Budget(max_queries=len(bench.archs) - 1)
    with pytest.raises(db.BudgetExhausted):  # all or nothing
        bench.query_many(bench.archs, budget=budget)
    assert budget.spent_queries == 0
    budget = db.Budget(max_queries=100)
    bench.query_many(bench.archs, budget=budget)
    assert budget.spent_queries == len(bench.archs)
    assert budget.spent_seconds == pytest.approx(sum(bench.cost(int(x)) for x in bench.archs))
    with pytest.raises(ValueError):
        db.Budget(max_queries=-1)
    assert db.Budget().remaining() == 1.0


def test_best_is_the_oracle(bench, frame):
    means = frame.group_by("arch_index").agg(pl.col("test_acc").mean(), pl.col("valid_loss").mean())
    top = means.sort(["test_acc", "arch_index"], descending=[True, False]).row(0, named=True)
    arch, value = bench.best()
    assert arch == top["arch_index"] and value == pytest.approx(top["test_acc"], rel=1e-12)
    low = means.sort("valid_loss").row(0, named=True)
    assert bench.best("valid_loss")[0] == low["arch_index"]
    s0 = frame.filter(pl.col("seed") == 0).sort("valid_acc", descending=True).row(0, named=True)
    assert bench.best("valid_acc", seed=0) == (s0["arch_index"], pytest.approx(s0["valid_acc"]))
    assert bench.best("test_acc")[1] == bench.test(bench.best("test_acc")[0])


def test_info_from_file_and_live(bench, cache):
    from danas_bench.tables import archinfo
    from danas_bench.training import data

    with_file = [a for a in (int(x) for x in bench.archs) if not np.isnan(bench._facts._known()["params"][a])]
    assert len(with_file) == 2
    info = bench.info(with_file[0])
    assert info["source"] == "table" and info["params"] > 0 and info["flops"] > 0 and info["latency_ms"] > 0
    other = next(int(x) for x in bench.archs if int(x) not in with_file)
    with pytest.raises(MissingRecord, match="danas-bench archs"):
        bench.info(other)  # fallback="error"
    live = db.open(PAIR, fallback="live")
    got = live.info(other)
    assert got["source"] == "live" and got["params"] > 0
    ref = archinfo.facts(other, RECIPE, data.load("digits"))
    assert (got["params"], got["flops"]) == (ref["params"], ref["flops"])
    np.testing.assert_array_equal(live.info_many([with_file[0], other], "params"), [info["params"], got["params"]])


def test_frame_and_no_kd_pair(cache):
    none = db.open("digits/none")
    f = none.frame()
    assert isinstance(f, pl.DataFrame) and f.height == 4
    a = int(none.archs[0])
    assert np.isnan(none.query(a, "valid_kl_teacher", seed=0))  # not recorded without a teacher
    assert none.query(a, kd_temperature=2.0) == none.query(a)  # alpha = 0: the temperature is moot
    with pytest.raises(ValueError, match="without a teacher"):
        none.query(a, kd_alpha=0.5)


# --- the live fallback -------------------------------------------------------------------------------------


def test_live_fallback_trains_caches_and_reads_back(cache):
    bench = db.open(PAIR, fallback="live")
    new = _not_in_table(bench)
    alias = _alias(new)
    budget = db.Budget()
    v = bench.query(alias if alias is not None else new, seed=None, budget=budget)
    rec = bench.record(new, seed=0)
    assert rec["source"] == "live" and rec["arch_index"] == new and rec["seed"] == 0
    assert rec["recipe_id"] == RID and rec["valid_acc"] == v and len(rec["valid_acc_curve"]) == RECIPE.epochs
    assert budget.spent_queries == 1 and budget.spent_seconds == pytest.approx(rec["train_seconds"])
    files = list((cache / "overlay" / "digits" / "resnet" / RID).glob("*.parquet"))
    assert len(files) == 1
    assert new not in set(bench.archs.tolist())  # the table's own architectures stay as they are
    # a fresh bench (another process, later) reads the overlay without training
    again = db.open(PAIR, fallback="error")
    assert again.query(new, seed=0) == v and again.record(new)["source"] == "live"
    assert again.frame().height == bench._file.num_rows + 1

    # a seed the table lacks and an off-table KD setting, in one go each
    a = int(bench.archs[0])
    shipped_mean = bench.query(a, seed="mean")
    v3 = bench.query(a, seed=3)
    vkd = bench.query(a, seed=0, kd_temperature=2.0, kd_alpha=0.5)
    kd_rec = bench.record(a, seed=0, kd_temperature=2.0, kd_alpha=0.5)
    assert kd_rec["source"] == "live" and (kd_rec["kd_temperature"], kd_rec["kd_alpha"]) == (2.0, 0.5)
    assert bench.record(a, seed=0)["source"] == "table"  # the table's KD setting is untouched
    n_files = len(list(files[0].parent.glob("*.parquet")))
    assert n_files == 3
    assert bench.query(a, seed=3) == v3 and bench.query(a, kd_temperature=2.0, kd_alpha=0.5, seed=0) == vkd
    assert len(list(files[0].parent.glob("*.parquet"))) == n_files  # answered from the overlay
    assert db.open(PAIR, fallback="error").query(a, seed=3) == v3
    assert bench.query(a, seed="mean") == shipped_mean  # the live seed only with the opt-in:
    bench.include_overlay = True
    recorded = [0, 3] + ([1] if a in _noisy(bench) else [])
    assert bench.query(a, seed="mean") == pytest.approx(np.mean([bench.query(a, seed=s) for s in recorded]))

    ov = Overlay(PAIR, RID)
    assert ov.read_all().num_rows == 3
    ov.compact()
    assert len(ov.files()) == 1 and ov.read_all().num_rows == 3
    assert db.open(PAIR, fallback="error").query(a, seed=3) == v3


def test_live_seeds_never_move_shipped_answers_unless_asked(cache):
    """Seeds trained live (a table architecture's new seed, an off-table architecture's second seed)
    change no seed mean, test value, sampled seed or charge; include_overlay=True opts them in."""
    bench = db.open(PAIR, fallback="live")
    noisy = _noisy(bench)
    one = next(int(x) for x in bench.archs if int(x) not in noisy)  # seed 0 only in the table
    two = noisy[0]  # seeds 0 and 1
    new = _not_in_table(bench)
    archs = [one, two, new]
    budget = db.Budget()
    bench.query(new, seed="mean", budget=budget)  # trains `new` live at the table's first seed

    def answers(b):
        spent = db.Budget()
        b.rng = np.random.default_rng(5)  # test_many(seed=None) samples with the bench's own
        b.query_many(archs, seed=0, budget=spent)
        return {
            "test": [b.test(x) for x in archs],
            "test_many": b.test_many(archs).tolist(),
            "mean": [b.query(x, seed="mean") for x in archs],
            "mean_many": b.query_many(archs, seed="mean").tolist(),
            "curve": [b.curve(x, seed="mean").tolist() for x in archs],
            "sampled": [b.query(x, seed=None, rng=np.random.default_rng(k)) for k in range(8) for x in archs],
            "sampled_many": b.query_many(archs * 8, seed=None, rng=np.random.default_rng(0)).tolist(),
            "test_sampled": b.test_many(archs * 8, seed=None).tolist(),
            "cost": [b.cost(x) for x in archs],
            "charged": spent.spent_seconds,
        }

    before = answers(bench)
    live = bench.query_many(archs, seed=7)  # really trained, into the overlay
    assert {bench.record(x, seed=7)["source"] for x in archs} == {"live"}
    assert answers(bench) == before
    assert answers(db.open(PAIR, fallback="error")) == before  # a fresh bench reads the overlay alike

    opted = db.open(PAIR, fallback="error", include_overlay=True)
    for x, v7 in zip(archs, live):
        seeds = [0, 7] + ([1] if x == two else [])
        assert opted.query(x, seed="mean") == pytest.approx(np.mean([opted.query(x, seed=s) for s in seeds]))
        assert opted.test(x) == pytest.approx(np.mean([opted.test(x, seed=s) for s in seeds]))
        drawn = opted.query_many([x] * 64, seed=None, rng=np.random.default_rng(0))
        assert v7 in drawn and set(drawn) <= {opted.query(x, seed=s) for s in seeds}
    assert opted.test_many(archs).tolist() != before["test_many"]


def test_live_query_many_trains_the_missing_ones(cache):
    bench = db.open(PAIR, fallback="live")
    a = int(bench.archs[0])
    vals = bench.query_many([a, int(bench.archs[1])], seed=5)
    assert np.isfinite(vals).all()
    assert {bench.record(int(x), seed=5)["source"] for x in bench.archs[:2]} == {"live"}
    assert Overlay(PAIR, RID).read_all().num_rows == 2


# --- concurrency -----------------------------------------------------------------------------------------


def _append_worker(base: str, records: list[dict], worker: int, rounds: int) -> int:
    ov = Overlay(PAIR, RID, base)
    for k in range(rounds):
        batch = [{**r, "seed": 100 + worker * 10 + k} for r in records]
        batch.append({**records[0], "seed": 999})  # the same key from every worker: stored once
        ov.append(batch, RECIPE.to_dict(), KD("resnet").__dict__)
    return worker


def _live_worker(tables: str, cache: str, arch: int, seed: int) -> float:
    os.environ.update(danas_env(tables, cache))
    import torch

    torch.set_num_threads(1)
    return db.open(PAIR, fallback="live").query(arch, seed=seed)


def test_concurrent_overlay_writers_lose_nothing(bench, cache):
    records = [bench.record(int(a)) for a in bench.archs[:3]]
    base = str(cache / "overlay")
    workers, rounds = 4, 5
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        assert sorted(pool.starmap(_append_worker, [(base, records, w, rounds) for w in range(workers)])) == list(
            range(workers)
        )
    ov = Overlay(PAIR, RID, base)
    table = ov.read_all()
    keys = set(zip(table.column("arch_index").to_pylist(), table.column("seed").to_pylist()))
    assert table.num_rows == len(keys) == workers * rounds * len(records) + 1
    assert not [p for p in ov.dir.iterdir() if ".tmp-" in p.name]
    assert sum(Overlay(PAIR, RID, base)._read(p).num_rows for p in ov.files()) == table.num_rows  # no duplicates
    fresh = db.open(PAIR, fallback="error", overlay_dir=base)
    for w in range(workers):
        for k in range(rounds):
            for r in records:
                assert fresh.query(r["arch_index"], seed=100 + w * 10 + k) == r["valid_acc"]


@pytest.mark.slow
def test_concurrent_live_training_of_the_same_row(bench, qroot, cache):
    """Two processes miss the same row at once: both may train it, the overlay keeps one row."""
    new = _not_in_table(bench)
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        vals = pool.starmap(_live_worker, [(str(qroot), str(cache), new, 0)] * 2)
    table = Overlay(PAIR, RID).read_all()
    keys = list(zip(table.column("arch_index").to_pylist(), table.column("seed").to_pylist()))
    assert keys == [(new, 0)]
    assert db.open(PAIR, fallback="error").query(new, seed=0) in vals


# --- CLI ---------------------------------------------------------------------------------------------------


def test_cli_query(bench, capsys):
    a = int(bench.archs[0])
    assert cli.main(["query", space.arch_str(a), f"pair={PAIR}", "fallback=error", "info=false"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch_index"] == a and out["source"] == "table" and out["valid_acc"] == bench.query(a, seed=0)
    assert cli.main(["query", str(a), f"pair={PAIR}", "metric=valid_acc", "epoch=1", "fallback=error"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["value"] == bench.query(a, epoch=1, seed=0)
    assert cli.main(["query", str(a), f"pair={PAIR}", "metric=test_acc", "seed=mean"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == bench.test(a)


def test_open_by_recipe_version_name(capsys):
    """``recipe_id="v2"`` opens the table of ``conf/recipe/<dataset>-v2.yaml``; a bad name says what is known."""
    from danas_bench.core.recipe import recipe_for
    from danas_bench.query.catalog import discover

    from conftest import REPO

    root = REPO / "tables"
    v2 = recipe_for("digits", "v2").recipe_id
    if v2 not in discover(root).get("digits/none", {}):
        pytest.skip("no shipped digits v2 table")
    b = db.open("digits/none", root, fallback="error", recipe_id="v2")
    assert b.recipe_id == v2 and b.path.name == f"none-{v2}.parquet"
    a = int(b.archs[0])
    args = ["query", str(a), "pair=digits/none", "recipe_id=v2", f"root={root}", "fallback=error", "metric=valid_acc"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["value"] == b.query(a, seed=0)
    with pytest.raises(ValueError, match="neither a 16-hex recipe id nor a known version.*digits-v9"):
        db.open("digits/none", root, recipe_id="v9")
    with pytest.raises(ValueError, match=r"no table of recipe 'v2' \(v2 is recipe [0-9a-f]{16}\)"):
        db.open("mnist1d/mlp", root, recipe_id="v2")  # mnist1d's v2 replaced the mlp teacher
    # without a name, the version conf/recipe/digits.yaml serves; v1 stays reachable by name
    served = db.open("digits/none", root, fallback="error")
    assert served.recipe_id == recipe_for("digits").recipe_id
    v1 = db.open("digits/none", root, fallback="error", recipe_id="v1")
    assert v1.recipe_id == recipe_for("digits", "v1").recipe_id and v1.path.name == f"none-{v1.recipe_id}.parquet"


def test_a_broken_recipe_alias_stops_open_instead_of_serving_another_version(tmp_path, monkeypatch):
    """digits has v1 and v2 tables; were `use: v3` (a typo) read as "no configured recipe", open() would
    serve the newest table, v2's partial one. It raises, naming the alias."""
    import shutil

    from danas_bench.core import recipe as rc

    from conftest import REPO

    for f in rc.RECIPE_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "digits.yaml").write_text("use: v3\n")
    monkeypatch.setattr(rc, "RECIPE_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"digits.yaml serves `use: v3`"):
        db.open("digits/none", REPO / "tables", fallback="error")
    assert db.open("digits/none", REPO / "tables", fallback="error", recipe_id="v1").recipe_id == "dfaf0472f47c5f97"


def test_open_all_serves_the_configured_recipe_per_dataset(tmp_path):
    """A pair that exists only in another recipe version (mnist1d/tcn only in v2, mnist1d/mlp only in v1) is
    not among open_all's pairs when its dataset has tables of the configured recipe; datasets without any
    (your own) keep every pair."""
    from danas_bench.core.recipe import recipe_for
    from danas_bench.query.catalog import default_pairs

    served = recipe_for("mnist1d").recipe_id  # the version conf/recipe/mnist1d.yaml serves
    v1, v2 = recipe_for("mnist1d", "v1").recipe_id, recipe_for("mnist1d", "v2").recipe_id
    other, only_other = (v2, "tcn") if served == v1 else (v1, "mlp")
    names = [
        f"mnist1d/none-{served}",
        f"mnist1d/none-{other}",
        f"mnist1d/{only_other}-{other}",
        "digits/resnet-0123456789abcdef",
    ]
    for name in names:  # discovery reads names only
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / f"{name}.parquet").touch()
    assert default_pairs(tmp_path) == ["digits/resnet", "mnist1d/none"]


def test_open_all_leaves_out_retired_teachers_but_open_reads_them(tmp_path):
    """A retired teacher's table (digits/mlp since its MLP was at its ceiling, pairs.RETIRED) is not in the
    standard set that open_all and the leaderboard use, yet its name still parses, so open(pair) reads it."""
    from danas_bench.core.pairs import RETIRED, Pair
    from danas_bench.core.recipe import recipe_for
    from danas_bench.query.catalog import default_pairs, pairs_with_recipe

    assert "mlp" in RETIRED["digits"]
    served, v1 = recipe_for("digits").recipe_id, recipe_for("digits", "v1").recipe_id
    assert served != v1
    (tmp_path / "digits").mkdir()
    for name in ("none", "resnet", "vgg", "mlp"):
        (tmp_path / "digits" / f"{name}-{served}.parquet").touch()
    for name in ("none", "resnet", "mlp"):
        (tmp_path / "digits" / f"{name}-{v1}.parquet").touch()
    assert default_pairs(tmp_path) == ["digits/none", "digits/resnet", "digits/vgg"]
    # the served version's board is the standard set; an older version's keeps the teachers it was made with
    assert sorted(pairs_with_recipe(tmp_path, served)) == ["digits/none", "digits/resnet", "digits/vgg"]
    assert sorted(pairs_with_recipe(tmp_path, "v1")) == ["digits/mlp", "digits/none", "digits/resnet"]
    assert Pair.parse("digits/mlp").teacher == "mlp"  # retired, still a valid name
    with pytest.raises(ValueError, match="unknown teacher 'vit' for digits"):
        Pair.parse("digits/vit")


def test_latency_is_timed_round_robin_and_keeps_each_models_fastest_round():
    """Every model is warmed once, then timed once per round in turn (so that the machine's drift falls on
    all of them alike); each keeps its fastest round, per sample."""
    from danas_bench.tables import archinfo

    calls, now = [], [0.0]
    cost = {"a": [3.0, 1.0, 2.0], "b": [5.0, 6.0, 4.0]}  # seconds of each timed round

    def model(name):
        def forward(x):
            calls.append(name)
            timed = calls.count(name) - 2  # the first call is the warm-up
            if timed >= 0:
                now[0] += cost[name][timed]

        return forward

    x = torch.zeros(4, 1)
    got = archinfo.round_robin_latency([model("a"), model("b")], x, rounds=3, clock=lambda: now[0])
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    np.testing.assert_allclose(got, [1000.0 * 1.0 / 4, 1000.0 * 4.0 / 4])


def test_facts_many_matches_facts_but_for_the_timing():
    from danas_bench.tables import archinfo
    from danas_bench.training import data

    ds = data.load("digits")
    some = [int(a) for a in space.canonical_indices()[:5]]
    many = archinfo.facts_many(some[::-1], RECIPE, ds)
    assert [r["arch_index"] for r in many] == some[::-1]
    for r in many:
        one = archinfo.facts(r["arch_index"], RECIPE, ds)
        assert {k: v for k, v in r.items() if k != "latency_ms"} == {k: v for k, v in one.items() if k != "latency_ms"}
        assert r["latency_ms"] > 0
