"""The real bench, the synthetic bench and the leaderboard's held-out view satisfy the bench interface
the runner and the searchers use (:class:`danas_bench.search.protocol.BenchLike`): every member is
there, and every method takes the same parameters (names, kinds, defaults) as the Protocol says, so a
call written against one bench works on the others."""

from __future__ import annotations

import inspect

import pytest

from danas_bench.query.bench import Bench
from danas_bench.reports.heldout import HeldOutSeeds, SearchView, Space
from danas_bench.search.protocol import BenchLike
from danas_bench.search.synthetic import SyntheticBench

METHODS = sorted(name for name, v in vars(BenchLike).items() if inspect.isfunction(v) and not name.startswith("_"))
ATTRIBUTES = sorted(BenchLike.__annotations__)
READS = ("query", "query_many", "test", "test_many")


def _params(fn) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_protocol_lists_what_the_runner_uses():
    assert {
        "query",
        "query_many",
        "test",
        "test_many",
        "best",
        "cost",
        "info",
        "info_many",
        "descriptor",
        "default_pool",
    } <= set(METHODS)
    assert {"pair", "dataset", "teacher", "archs", "seeds", "epochs"} <= set(ATTRIBUTES)


@pytest.mark.parametrize("impl", [Bench, SyntheticBench, SearchView], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", METHODS)
def test_signatures_match_the_protocol(impl, name):
    assert _params(getattr(impl, name)) == _params(getattr(BenchLike, name)), f"{impl.__name__}.{name}"


def test_reads_take_everything_after_metric_by_keyword_in_one_order():
    order = ["epoch", "seed", "rng", "budget", "kd_temperature", "kd_alpha"]
    for name in READS:
        params = list(inspect.signature(getattr(BenchLike, name)).parameters.values())
        assert [p.name for p in params[:3]] == ["self", "archs" if name.endswith("_many") else "arch", "metric"]
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:3])
        kw = [p.name for p in params[3:]]
        assert all(p.kind is p.KEYWORD_ONLY for p in params[3:])
        assert kw == [k for k in order if k in kw], name
    defaults = {n: inspect.signature(getattr(BenchLike, n)).parameters["seed"].default for n in READS}
    assert defaults == {"query": None, "query_many": None, "test": "mean", "test_many": "mean"}


def test_synthetic_bench_is_an_instance():
    b = SyntheticBench("synth-a/resnet", ops=("nor_conv_1x1", "nor_conv_3x3"))
    assert isinstance(b, BenchLike)
    assert b.info_many(b.archs[:3], "latency_ms").tolist() == [b.info(int(a))["latency_ms"] for a in b.archs[:3]]
    assert b.descriptor().shape == (5,)
    pool = b.default_pool()
    assert pool[b.pair] is b and "synth-a/none" in pool


def _real_bench():
    import danas_bench as db

    try:
        return db.open("digits/none", fallback="error")
    except ValueError:  # (TableError is one)
        pytest.skip("no shipped digits/none table here")


def test_real_bench_is_an_instance():
    from danas_bench.query.catalog import discover

    bench = _real_bench()
    assert isinstance(bench, BenchLike)
    a = int(bench.archs[0])
    assert bench.query_many([a], seed=bench.seeds[0]).tolist() == [bench.query(a, seed=bench.seeds[0])]
    assert bench.test_many([a], kd_temperature=None, kd_alpha=None).tolist() == [bench.test(a)]
    pool = bench.default_pool()
    assert pool[bench.pair] is bench and sorted(pool) == sorted(discover(bench.root))


def _view(bench) -> SearchView:
    sp = Space(bench, HeldOutSeeds.min_seeds)
    return SearchView(bench, sp, sp.visible_seeds[0], HeldOutSeeds(bench, sp))


@pytest.mark.parametrize("base", ["synthetic", "digits/none"])
def test_search_view_is_an_instance(base):
    bench = (
        SyntheticBench("synth-a/resnet", ops=("nor_conv_1x1", "nor_conv_3x3")) if base == "synthetic" else _real_bench()
    )
    view = _view(bench)
    assert isinstance(view, BenchLike)
    archs = view.archs[:5]
    a = int(archs[0])
    # the searcher's reads answer the visible seed whatever seed is asked
    assert view.query_many(archs).tolist() == [view.query(int(x), seed="mean") for x in archs]
    assert view.query_many(archs, seed=None, rng=None).tolist() == view.query_many(archs, seed=view.visible).tolist()
    assert view.test_many(archs, kd_temperature=None, kd_alpha=None).tolist() == [view.test(int(x)) for x in archs]
    assert view.best()[1] == max(view.test_many(view.archs))
    assert view.info_many(archs, "params").tolist() == [float(view.info(int(x))["params"]) for x in archs]
    assert view.descriptor().dtype == "float32"
    # refused, with the reason, never by a changed signature
    with pytest.raises(ValueError, match="refused"):
        view.test(a, seed=view.visible)
    with pytest.raises(ValueError, match="refused"):
        view.best("test_acc", seed=0)
    with pytest.raises(ValueError, match="scores 'test_acc'"):
        view.test_many(archs, "test_loss")
    with pytest.raises(ValueError, match="off-table KD"):
        view.query_many(archs, kd_temperature=2.0)
    with pytest.raises(ValueError, match="valid_acc only"):
        view.query(a, "test_acc")
    with pytest.raises(PermissionError):
        SearchView(bench, view._space, view.visible).test(a)
    with pytest.raises(TypeError):
        view.query(a, "valid_acc", None)  # epoch is keyword-only, as on the other benches


def test_search_view_default_pool_holds_views():
    bench = SyntheticBench("synth-a/resnet", ops=("nor_conv_1x1", "nor_conv_3x3"))
    view = _view(bench)
    pool = view.default_pool()
    assert pool[view.pair] is view and sorted(pool) == sorted(bench.default_pool())
    other = pool["synth-a/none"]
    assert isinstance(other, SearchView) and other.seeds == (view.visible,) and other.scoring is None


def test_a_drifted_signature_is_caught():
    class Drifted:  # positional epoch and seed, budget before rng
        def query_many(
            self,
            archs,
            metric="valid_acc",
            epoch=None,
            seed=0,
            budget=None,
            rng=None,
            kd_temperature=None,
            kd_alpha=None,
        ): ...

    assert _params(Drifted.query_many) != _params(BenchLike.query_many)
