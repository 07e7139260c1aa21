"""Speed of the searchers: one run of 200 queries each, DaSS meta-training and ranking.

Run it explicitly (pytest does not collect ``bench_*.py`` by itself, and pyproject's addopts disable
benchmarks by default)::

    .venv/bin/pytest tests/bench_searchers.py --benchmark-enable -p no:cacheprovider

Everything runs on the synthetic benches (:mod:`danas_bench.search.synthetic`, the full 6,466-architecture
space), so the numbers are the searchers' own overhead plus microsecond look-ups, as on the real
tables. Groups:

- ``search-200``: one ``search.run`` of 200 queries per searcher (targets: random / evolution / AKD
  < 0.5 s; TRADE and AutoKD < 15 s);
- ``dass``: DaSS meta-training on the five other pairs (target < 60 s) and ranking the whole space
  with the adapted predictor (target < 1 s).

CPU seconds per round are in each row's ``extra_info`` (``--benchmark-json=FILE`` keeps them); on a
busy machine they are the fairer number.
"""

from __future__ import annotations

import time

import pytest

from danas_bench.search import runner as search
from danas_bench.search import synthetic
from danas_bench.search.baselines import dass as dass_mod
from danas_bench.search.baselines import make

TARGETS = {"random": 0.5, "evolution": 0.5, "akd": 0.5, "optuna_tpe": None, "trade": 15.0, "autokd": 15.0, "dass": None}


@pytest.fixture(scope="module")
def pool():
    return synthetic.open_all()


def _cpu(fn):
    def wrapped():
        c = time.process_time()
        out = fn()
        wrapped.cpu.append(time.process_time() - c)
        return out

    wrapped.cpu = []
    return wrapped


@pytest.mark.benchmark(group="search-200")
@pytest.mark.parametrize("name", list(TARGETS))
def test_search_200(benchmark, pool, name):
    bench = pool["synth-a/resnet"]
    if name == "dass":  # meta-training is measured on its own below
        search.run(make("dass"), bench, 5, seed=0, pool=pool)
    seeds = iter(range(1000))
    fn = _cpu(lambda: search.run(make(name), bench, {"queries": 200}, next(seeds), pool=pool))
    rounds = 3 if name in ("trade", "autokd") else 5
    frame = benchmark.pedantic(fn, rounds=rounds, iterations=1)
    assert frame.height == 200
    benchmark.extra_info["cpu_seconds"] = sum(fn.cpu) / len(fn.cpu)
    benchmark.extra_info["target_seconds"] = TARGETS[name]


@pytest.mark.benchmark(group="dass")
def test_dass_meta_training(benchmark, pool):
    bench = pool["synth-b/mlp"]

    def meta():
        dass_mod._CACHE.clear()
        s = make("dass", exclude_same_dataset=False)  # the five other pairs (default: other datasets, 3)
        s.problem = search.Problem(bench, pool)
        return s.meta_train(s.problem)

    fn = _cpu(meta)
    state = benchmark.pedantic(fn, rounds=2, iterations=1)
    assert len(state["tasks"]) == 5
    benchmark.extra_info["cpu_seconds"] = sum(fn.cpu) / len(fn.cpu)
    benchmark.extra_info["target_seconds"] = 60


@pytest.mark.benchmark(group="dass")
def test_dass_ranking(benchmark, pool):
    bench = pool["synth-b/mlp"]
    s = make("dass")
    search.run(s, bench, 12, seed=0, pool=pool)  # meta-trained and adapted
    scores = benchmark(s.adapt)
    assert scores.shape == (len(bench.archs),)
    benchmark.extra_info["target_seconds"] = 1
