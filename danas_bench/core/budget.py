"""Search budgets: a query count and simulated training seconds, the same rules for every searcher.

A query of architecture ``a`` at epoch ``e`` costs one query and ``train_seconds(a) * e / epochs``
simulated seconds, where ``train_seconds`` is the training time recorded in the table (mean over the
recorded seeds), as NAS-Bench-201's simulated time. A charge that would take either counter past its
limit is refused *before* the answer is given: :class:`BudgetExhausted` is raised and nothing is
charged, so a searcher never spends more than its budget. Test metrics (``Bench.test``) are never
charged.

``fractional_queries=True`` counts a query at epoch ``e`` as ``e / epochs`` of a query (a query budget
in full-training equivalents), so that multi-fidelity searchers (AutoKD's Hyperband brackets) pay for
a low-epoch query in proportion to the epochs asked, as they do in simulated seconds; the default
counts every query as one.
"""

from __future__ import annotations

import math
import numbers


class BudgetExhausted(Exception):
    """The query would take the budget past its query count or its simulated seconds."""


class Budget:
    """``Budget(max_queries=None, max_seconds=None)``; ``None`` means no limit on that counter."""

    __slots__ = ("max_queries", "max_seconds", "spent_queries", "spent_seconds", "fractional_queries")

    def __init__(
        self, max_queries: int | None = None, max_seconds: float | None = None, fractional_queries: bool = False
    ):
        if max_queries is not None and not (
            isinstance(max_queries, numbers.Real)
            and not isinstance(max_queries, bool)
            and math.isfinite(max_queries)
            and int(max_queries) == max_queries
            and max_queries >= 0
        ):
            raise ValueError(f"max_queries must be a non-negative int or None (no limit), got {max_queries!r}")
        if max_seconds is not None and not (
            isinstance(max_seconds, numbers.Real)
            and not isinstance(max_seconds, bool)
            and math.isfinite(max_seconds)
            and max_seconds >= 0
        ):
            raise ValueError(
                f"max_seconds must be a finite non-negative number or None (no limit), got {max_seconds!r}"
            )
        self.max_queries = None if max_queries is None else int(max_queries)
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self.spent_queries = 0
        self.spent_seconds = 0.0
        self.fractional_queries = bool(fractional_queries)

    def _queries(self, queries, share) -> float:
        """What ``queries`` at ``share`` (epoch / epochs) of full training count."""
        if not self.fractional_queries or share == 1:
            return queries
        if not 0 < share <= 1:
            raise ValueError(f"a query's share of full training must be in (0, 1], got {share!r}")
        return queries * float(share)

    def affordable(self, seconds: float = 0.0, queries: int = 1, share: float = 1.0) -> bool:
        """Whether a charge of ``seconds`` and ``queries`` (at ``share`` of full training) fits in what is left."""
        queries = self._queries(queries, share)
        if self.max_queries is not None and self.spent_queries + queries > self.max_queries * (1 + 1e-12):
            return False
        if self.max_seconds is not None and self.spent_seconds + seconds > self.max_seconds * (1 + 1e-12):
            return False
        return True

    def charge(self, seconds: float, queries: int = 1, share: float = 1.0) -> None:
        """Charge ``seconds`` and ``queries``, or raise :class:`BudgetExhausted` charging nothing.
        ``share``: the epochs asked over the recipe's epochs (counted only with ``fractional_queries``)."""
        if not seconds >= 0:  # NaN or negative: a bug upstream, never a free query
            raise ValueError(f"cannot charge {seconds!r} seconds")
        queries = self._queries(queries, share)
        q, s = self.spent_queries + queries, self.spent_seconds + seconds
        if (self.max_queries is not None and q > self.max_queries * (1 + 1e-12)) or (
            self.max_seconds is not None and s > self.max_seconds * (1 + 1e-12)
        ):
            raise BudgetExhausted(
                f"budget exhausted: this query costs {queries:g} quer{'y' if queries == 1 else 'ies'} and "
                f"{float(seconds):.3f} simulated s; spent {self.spent_queries}/{_fmt(self.max_queries)} queries "
                f"and {self.spent_seconds:.3f}/{_fmt(self.max_seconds)} s"
            )
        self.spent_queries, self.spent_seconds = q, s

    @property
    def remaining_queries(self) -> float:
        return math.inf if self.max_queries is None else self.max_queries - self.spent_queries

    @property
    def remaining_seconds(self) -> float:
        return math.inf if self.max_seconds is None else self.max_seconds - self.spent_seconds

    def remaining(self) -> float:
        """Share of the budget left, in [0, 1]: the smaller of the two counters' shares (1.0 unlimited)."""
        shares = [1.0]
        if self.max_queries is not None:
            shares.append(1.0 - self.spent_queries / self.max_queries if self.max_queries else 0.0)
        if self.max_seconds is not None:
            shares.append(1.0 - self.spent_seconds / self.max_seconds if self.max_seconds else 0.0)
        return max(0.0, min(shares))

    @property
    def exhausted(self) -> bool:
        return self.remaining() <= 0.0

    def __repr__(self) -> str:
        return (
            f"Budget(queries {self.spent_queries}/{_fmt(self.max_queries)}, "
            f"seconds {self.spent_seconds:.3f}/{_fmt(self.max_seconds)})"
        )


def _fmt(x) -> str:
    return "inf" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))
