"""What the runner and the searchers use from a bench, written down as one :class:`typing.Protocol`.

:class:`danas_bench.query.bench.Bench` (the real tables),
:class:`danas_bench.search.synthetic.SyntheticBench` (made-up tables for fast tests) and the
leaderboard's :class:`danas_bench.reports.heldout.SearchView` (one visible seed, validation only) all
satisfy it; ``tests/test_protocol.py`` checks that their methods' parameters match these, name for
name. The runner calls these members unconditionally: a bench of your own must provide all of them.
A bench that must refuse a read (the view refuses test reads at another seed) raises an error saying
why; it never changes the signature.

Every read takes the architecture(s) and the metric positionally and the rest by keyword, in one
order: ``epoch, seed, rng, budget, kd_temperature, kd_alpha``. The seed rule: ``seed=None`` samples one
recorded seed per architecture with ``rng`` (default: the bench's own generator), "mean" averages the
recorded seeds, an int reads that seed; searchers' reads (``query``, ``query_many``) default to None,
scoring reads (``test``, ``test_many``, ``best``) to "mean".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from danas_bench.core.budget import Budget


@runtime_checkable
class BenchLike(Protocol):
    pair: str  # "dataset/teacher"
    dataset: str
    teacher: str
    archs: np.ndarray  # sorted canonical indices the bench holds
    seeds: Sequence[int]
    epochs: int

    def query(
        self,
        arch,
        metric: str = "valid_acc",
        *,
        epoch: int | None = None,
        seed=None,
        rng: np.random.Generator | None = None,
        budget: Budget | None = None,
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> float:
        """A validation / training metric of one architecture, charged to ``budget``."""

    def query_many(
        self,
        archs,
        metric: str = "valid_acc",
        *,
        epoch: int | None = None,
        seed=None,
        rng: np.random.Generator | None = None,
        budget: Budget | None = None,
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        """``query`` for many architectures; the budget is charged the sum."""

    def test(
        self,
        arch,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> float:
        """A test metric, for scoring; never charged."""

    def test_many(
        self,
        archs,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        """``test`` for many architectures."""

    def best(self, metric: str = "test_acc", *, seed="mean") -> tuple[int, float]:
        """(architecture, value) of the best architecture: the oracle regret is measured against."""

    def cost(self, arch, epoch: int | None = None) -> float:
        """Simulated seconds a query of ``arch`` at ``epoch`` is charged."""

    def info(self, arch) -> dict:
        """Params, FLOPs and latency (ms) of the architecture."""

    def info_many(self, archs, key: str = "params") -> np.ndarray:
        """One of ``info``'s facts for many architectures (float64)."""

    def descriptor(self) -> np.ndarray:
        """A fixed-length description of the task (teacher and dataset), for meta-learning."""

    def default_pool(self) -> Mapping[str, BenchLike]:
        """The pairs beside this one, ``{pair: bench}`` (this bench for its own pair; a
        :class:`danas_bench.query.catalog.LazyPool` opens the others on first use): what the runner reads
        other pairs from (NAS-without-KD's ``none`` pair, meta-learning) when it is given no pool. A bench
        with no other pairs returns ``{self.pair: self}``."""
