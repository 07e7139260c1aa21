"""Searching a bench: the ask/tell protocol a searcher speaks, the runner that drives it under a budget,
a synthetic bench for fast tests, and the shipped searchers (``danas_bench.search.baselines``).

Write a searcher against the names exported here::

    from danas_bench.search import Ask, Problem, Searcher, run
"""

from danas_bench.search.runner import (
    TRAJECTORY_SCHEMA,
    Ask,
    LazyPool,
    Problem,
    Searcher,
    config_id,
    final,
    run,
    sample_policy,
    unseen_random,
)

__all__ = [
    "TRAJECTORY_SCHEMA",
    "Ask",
    "LazyPool",
    "Problem",
    "Searcher",
    "config_id",
    "final",
    "run",
    "sample_policy",
    "unseen_random",
]
