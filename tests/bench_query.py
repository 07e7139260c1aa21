"""Speed and memory of the query API, with pytest-benchmark, against naive polars baselines.

Run it explicitly (pytest does not collect ``bench_*.py`` by itself, and pyproject's addopts disable
benchmarks by default)::

    .venv/bin/pytest tests/bench_query.py --benchmark-enable -p no:cacheprovider

It measures the tables under ``tables/`` (or ``$DANAS_TABLES``) and skips, saying so, where there are
none. Groups (pytest-benchmark prints each row's ratio to the fastest of its group in parentheses):

- ``query-scalar``: ``bench.query`` of one architecture (several forms) vs a polars filter look-up;
- ``query-many``: ``bench.query_many`` over the whole space (15,625 indices) vs a polars join;
- ``open``: ``open_all`` of every table (in-process) vs reading the same files with polars;
- ``open-cold``: fresh processes; import and ``open_all`` times and RSS are in the ``extra_info`` of
  ``test_open_all_cold`` (``--benchmark-json=FILE`` keeps them); ``DANAS_BENCH_OPEN_COPIES=12`` opens
  every table 12 times, to size a 12-table release with the tables at hand;
- ``live``: one architecture trained live with the table's recipe (an unrecorded seed, in a
  throw-away overlay), set ``DANAS_BENCH_LIVE=0`` to skip it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import danas_bench as db
from danas_bench.core import space
from danas_bench.core.paths import tables_dir
from danas_bench.query.bench import discover


@pytest.fixture(scope="module")
def benches():
    found = discover()
    if not found:
        pytest.skip(
            f"no tables under {tables_dir()} (nothing to measure): make one with "
            f"`danas-bench generate pair=...`, or point $DANAS_TABLES at a tables folder"
        )
    return db.open_all(fallback="error")


@pytest.fixture(scope="module")
def bench(benches):
    """The largest table (most architectures)."""
    return max(benches.values(), key=lambda b: (len(b.archs), len(b.seeds)))


@pytest.fixture(scope="module")
def frame(bench):
    return bench.frame()


@pytest.fixture(scope="module")
def arch(bench):
    """A table architecture, recorded under every seed where some are (the slowest seed=None path)."""
    full = [int(a) for a in bench.archs if bench._st.main.n_have_l[int(a)] == len(bench.seeds)]
    return full[len(full) // 2] if full else int(bench.archs[len(bench.archs) // 2])


@pytest.fixture(scope="module")
def whole_space(bench):
    """Every index of the space whose canonical architecture the table holds (all 15,625 for a full
    table); tiled up to 15,625 for a sampled table, so the work is the same."""
    covered = np.nonzero(np.isin(space.canonical_table(), bench.archs))[0]
    return np.resize(covered, space.N_ARCHS) if len(covered) < space.N_ARCHS else covered


# --- one scalar ----------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="query-scalar")
def test_query_index_seed0(benchmark, bench, arch):
    benchmark.extra_info.update(pair=bench.pair, archs=len(bench.archs), seeds=bench.seeds)
    bench.query(arch, "valid_acc", seed=0)
    assert benchmark(bench.query, arch, "valid_acc", seed=0) == bench.query(arch, seed=0)


@pytest.mark.benchmark(group="query-scalar")
def test_query_index_sampled_seed(benchmark, bench, arch):
    rng = np.random.default_rng(0)
    bench.query(arch, "valid_acc", seed=None, rng=rng)
    benchmark(bench.query, arch, "valid_acc", seed=None, rng=rng)


@pytest.mark.benchmark(group="query-scalar")
def test_query_index_seed_mean(benchmark, bench, arch):
    bench.query(arch, "valid_acc", seed="mean")
    benchmark(bench.query, arch, "valid_acc", seed="mean")


@pytest.mark.benchmark(group="query-scalar")
def test_query_string_epoch_budget(benchmark, bench, arch):
    s = space.arch_str(arch)
    budget = db.Budget()
    bench.query(s, "valid_acc", epoch=1, seed=0, budget=budget)  # warm: parse the string, read the curve column
    benchmark(bench.query, s, "valid_acc", epoch=1, seed=0, budget=budget)


@pytest.mark.benchmark(group="query-scalar")
def test_query_baseline_polars_filter(benchmark, frame, arch):
    """The naive way: canonicalise, then a dataframe mask per query."""
    import polars as pl

    def naive(a):
        c = space.canonical(a)
        return frame.filter((pl.col("arch_index") == c) & (pl.col("seed") == 0))["valid_acc"][0]

    naive(arch)
    benchmark(naive, arch)


# --- the whole space -----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="query-many")
def test_query_many_whole_space(benchmark, bench, whole_space):
    benchmark.extra_info.update(n=len(whole_space))
    out = benchmark(bench.query_many, whole_space, "valid_acc", seed=0)
    assert out.shape == (space.N_ARCHS,)


@pytest.mark.benchmark(group="query-many")
def test_query_many_whole_space_mean_budget(benchmark, bench, whole_space):
    budget = db.Budget()
    benchmark(bench.query_many, whole_space, "valid_acc", seed="mean", budget=budget)


@pytest.mark.benchmark(group="query-many")
def test_query_many_baseline_polars_join(benchmark, bench, frame, whole_space):
    import polars as pl

    seed0 = frame.filter(pl.col("seed") == 0).select("arch_index", "valid_acc")
    canon = space.canonical_table()

    def naive(idx):
        asked = pl.DataFrame({"arch_index": canon[idx]})
        return asked.join(seed0, on="arch_index", how="left", maintain_order="left")["valid_acc"].to_numpy()

    out = benchmark(naive, whole_space)
    np.testing.assert_allclose(out, bench.query_many(whole_space, seed=0))


# --- opening -------------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="open")
def test_open_all_in_process(benchmark, benches):
    benchmark.extra_info.update(tables=len(benches), rows=sum(b._file.num_rows for b in benches.values()))
    out = benchmark(db.open_all, None, "error")
    assert sorted(out) == sorted(benches)


@pytest.mark.benchmark(group="open")
def test_open_baseline_polars_read(benchmark, benches):
    import polars as pl

    paths = [b.path for b in benches.values()]
    benchmark(lambda: [pl.read_parquet(p) for p in paths])


COLD = textwrap.dedent("""
    import json, os, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import danas_bench as db
    import danas_bench.query.bench
    t1 = time.perf_counter()
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    copies = int(os.environ.get("DANAS_BENCH_OPEN_COPIES", "1"))
    r0 = rss()
    t2 = time.perf_counter()
    opened = [db.open_all(fallback="error") for _ in range(copies)]
    t3 = time.perf_counter()
    r1 = rss()
    for benches in opened:  # every query metric, epoch and seed mode, test metrics, the whole space
        for b in benches.values():
            a = int(b.archs[0])
            for m in ("valid_acc", "valid_loss", "valid_ece", "valid_kl_teacher", "valid_agreement",
                      "train_acc", "train_loss", "train_seconds"):
                b.query(a, m, seed=b.seeds[0]); b.query(a, m, seed="mean"); b.query(a, m)
            for e in range(1, b.epochs + 1):
                b.query(a, "valid_acc", epoch=e, seed=b.seeds[0])
            for m in ("test_acc", "test_loss", "test_agreement"):
                b.test(a, m); b.test(a, m, seed=b.seeds[0])
            covered = np.nonzero(np.isin(db.query.store.canon(), b.archs))[0]
            b.query_many(covered, seed=b.seeds[0]); b.best()
    r2 = rss()
    print(json.dumps({"import_s": t1 - t0, "open_all_s": t3 - t2, "rss_open_mb": (r1 - r0) / 2**20,
                      "rss_used_mb": (r2 - r0) / 2**20, "rss_total_mb": r2 / 2**20,
                      "tables": sum(len(x) for x in opened)}))
""")


@pytest.mark.benchmark(group="open-cold")
def test_open_all_cold(benchmark, benches):
    """Fresh interpreters: time of ``import danas_bench`` + the query API, and of ``open_all`` with the
    imports done; RSS added by opening, and after the first queries of every metric. With
    ``DANAS_BENCH_OPEN_COPIES=k`` every table is opened k times (k separate benches), to see what
    k times as many tables of that size would cost before they exist."""
    runs = []

    def once():
        res = subprocess.run(
            [sys.executable, "-c", COLD], capture_output=True, text=True, env=dict(os.environ), timeout=120
        )
        assert res.returncode == 0, res.stderr
        runs.append(json.loads(res.stdout))

    benchmark.pedantic(once, rounds=5, iterations=1)
    for k in ("import_s", "open_all_s", "rss_open_mb", "rss_used_mb", "rss_total_mb"):
        benchmark.extra_info[f"median_{k}"] = float(np.median([r[k] for r in runs]))
    benchmark.extra_info["tables"] = runs[0]["tables"]
    benchmark.extra_info["copies"] = int(os.environ.get("DANAS_BENCH_OPEN_COPIES", "1"))


# --- live ----------------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="live")
@pytest.mark.skipif(os.environ.get("DANAS_BENCH_LIVE") == "0", reason="DANAS_BENCH_LIVE=0")
def test_live_one_architecture(benchmark, bench, tmp_path):
    """One architecture trained live with the table's recipe (an unrecorded seed, throw-away overlay);
    includes loading the data and the teacher's logits (Task.make) on the first miss."""
    live = db.open(bench.pair, fallback="live", overlay_dir=tmp_path / "overlay", recipe_id=bench.recipe_id)
    a = int(bench.archs[len(bench.archs) // 3])
    seeds = iter(range(1000, 2000))
    t0 = time.perf_counter()
    live.query(a, seed=next(seeds))  # the first miss also imports torch and loads the data and logits
    benchmark.extra_info.update(pair=bench.pair, recipe=bench.recipe.to_dict(), first_miss_s=time.perf_counter() - t0)
    benchmark.pedantic(lambda: live.query(a, seed=next(seeds)), rounds=3, iterations=1)
    assert live.record(a, seed=1001)["source"] == "live"
