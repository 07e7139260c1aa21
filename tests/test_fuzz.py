"""Fuzzing (hypothesis) of the inputs a user types: architecture parsing, ``query`` and ``query_many``.

Over 10,000 generated inputs in all (4,000 + 4,000 + 2,000): every one either answers or raises a
ValueError whose message says what was wrong; never a TypeError, OverflowError, KeyError, a crash, or
an answer to an input that a cold cache would refuse. The bench is a table of every canonical
architecture (seeds 0 and 1), written in a temporary root with the library's writer; it is opened with
``fallback="error"``, so an unrecorded seed or KD setting is a MissingRecord (the documented answer)
instead of a live training run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_integrity import write_table

import danas_bench as db
from danas_bench.core import space
from danas_bench.query.bench import MissingRecord

FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

OPS = list(space.OPS)
atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.integers(-2, 6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(OPS),
    st.binary(max_size=4),
    st.just(np.int64(3)),
    st.just(np.float32(1.0)),
    st.just(np.bool_(True)),
)
op_lists = st.lists(st.one_of(st.sampled_from(OPS), st.integers(-1, 5), atoms), min_size=0, max_size=8)


@st.composite
def mangled_strings(draw) -> str:
    """A valid architecture string with a few characters replaced, inserted or deleted."""
    s = list(space.arch_str(draw(st.integers(0, space.N_ARCHS - 1))))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(s)))
        what = draw(st.sampled_from(["replace", "insert", "delete"]))
        ch = draw(st.sampled_from(list("|~+0123 x_\n") + ["٣", "²", "nor_conv_3x3"]))
        if what == "insert" or not s:
            s.insert(i, ch)
        elif what == "replace":
            s[min(i, len(s) - 1)] = ch
        else:
            del s[min(i, len(s) - 1)]
    return "".join(s)


archs = st.one_of(
    atoms,
    op_lists,
    mangled_strings(),
    st.integers(0, space.N_ARCHS - 1),
    st.tuples(*[st.sampled_from(OPS)] * 6),
    st.lists(st.integers(0, 4), min_size=6, max_size=6),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _ok_error(exc: BaseException) -> None:
    assert type(exc) in (ValueError, MissingRecord), f"{type(exc).__name__}: {exc}"
    assert len(str(exc)) > 20, f"a ValueError without a useful message: {exc!r}"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "tables"
    write_table(root, "digits/resnet", space.canonical_indices(), seeds=(0, 1))
    return db.open("digits/resnet", root, fallback="error")


@settings(FUZZ, max_examples=4000)
@given(arch=archs)
def test_space_parsing(arch):
    try:
        i = space.to_index(arch)
    except ValueError as exc:
        _ok_error(exc)
        return
    assert 0 <= i < space.N_ARCHS and space.to_index(space.arch_str(i)) == i


seeds = st.one_of(st.none(), st.just("mean"), st.integers(-3, 3), st.integers(-(10**20), 10**20), atoms)
metrics = st.one_of(st.sampled_from(["valid_acc", "train_loss", "valid_loss", "test_acc", "params"]), atoms)
epochs = st.one_of(st.none(), st.integers(-1, 3), atoms)
kds = st.one_of(st.none(), st.just(4.0), st.floats(allow_nan=True, allow_infinity=True), atoms)


@settings(FUZZ, max_examples=4000)
@given(arch=archs, metric=metrics, epoch=epochs, seed=seeds, kd_t=kds, kd_a=kds)
def test_query(bench, arch, metric, epoch, seed, kd_t, kd_a):
    try:
        v = bench.query(arch, metric, epoch=epoch, seed=seed, kd_temperature=kd_t, kd_alpha=kd_a)
    except (ValueError, MissingRecord) as exc:
        _ok_error(exc)
        return
    assert isinstance(v, float) and math.isfinite(v)
    if seed is not None:  # the same question again (now from the caches) gives the same answer
        assert bench.query(arch, metric, epoch=epoch, seed=seed, kd_temperature=kd_t, kd_alpha=kd_a) == v


@settings(FUZZ, max_examples=2000)
@given(
    many=st.one_of(
        st.lists(archs, max_size=5),
        atoms,
        st.just(np.array([1, 2, 70000])),
        st.just(np.array([[1, 2]])),
        st.just(np.array([1.0, 2.0])),
        st.just(range(0, 30, 7)),
    ),
    metric=metrics,
    seed=seeds,
)
def test_query_many(bench, many, metric, seed):
    try:
        v = bench.query_many(many, metric, seed=seed)
    except (ValueError, MissingRecord) as exc:
        _ok_error(exc)
        return
    assert isinstance(v, np.ndarray) and v.dtype == np.float64
