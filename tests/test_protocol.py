"""Both benches satisfy the bench interface the runner and the searchers use
(:class:`danas_bench.search.protocol.BenchLike`): every member is there, and every method takes the
same parameters (names, kinds, defaults) as the Protocol says, so a call written against one bench
works on the other."""

from __future__ import annotations

import inspect

import pytest

from danas_bench.query.bench import Bench
from danas_bench.search.protocol import BenchLike
from danas_bench.search.synthetic import SyntheticBench

METHODS = sorted(name for name, v in vars(BenchLike).items() if inspect.isfunction(v) and not name.startswith("_"))
ATTRIBUTES = sorted(BenchLike.__annotations__)
READS = ("query", "query_many", "test", "test_many")


def _params(fn) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_protocol_lists_what_the_runner_uses():
    assert {"query", "query_many", "test", "test_many", "best", "cost", "info", "info_many",
            "descriptor"} <= set(METHODS)
    assert {"pair", "dataset", "teacher", "archs", "seeds", "epochs"} <= set(ATTRIBUTES)


@pytest.mark.parametrize("impl", [Bench, SyntheticBench], ids=lambda c: c.__name__)
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


def test_real_bench_is_an_instance():
    import danas_bench as db

    try:
        bench = db.open("digits/none", fallback="error")
    except ValueError:  # (TableError is one)
        pytest.skip("no shipped digits/none table here")
    assert isinstance(bench, BenchLike)
    a = int(bench.archs[0])
    assert bench.query_many([a], seed=bench.seeds[0]).tolist() == [bench.query(a, seed=bench.seeds[0])]
    assert bench.test_many([a], kd_temperature=None, kd_alpha=None).tolist() == [bench.test(a)]


def test_a_drifted_signature_is_caught():
    class Drifted:  # positional epoch and seed, budget before rng
        def query_many(self, archs, metric="valid_acc", epoch=None, seed=0, budget=None, rng=None,
                       kd_temperature=None, kd_alpha=None): ...

    assert _params(Drifted.query_many) != _params(BenchLike.query_many)
