"""Random search: uniform over the architectures on offer, without replacement.

The simplest baseline and, on NAS-Bench-201, a strong one (Li & Talwalkar, 2019; Dong & Yang, 2020).
Sampling is over canonical architectures, so isomorphic cells are never paid for twice.

``search_teacher="none"`` (registry name ``random_none``) searches the dataset's ``none`` pair instead
of the pair under search and is scored on the pair under search: the matched control for
NAS-then-KD (same algorithm, no-KD signal).
"""

from __future__ import annotations

import numpy as np

from danas_bench.search import Ask, Searcher


def searched_pair(problem, teacher) -> str | None:
    """The pair a searcher with ``search_teacher`` reads: None (or "self") for the pair under search."""
    if teacher in (None, "self", problem.teacher):
        return None
    pair = problem.companion(teacher)
    if not problem.has_pair(pair):
        raise RuntimeError(f"searching on {pair}, which the pool of benches does not hold")
    return pair


class RandomSearch(Searcher):
    name = "random"
    defaults: dict = {"search_teacher": None}

    def setup(self, problem, rng: np.random.Generator) -> None:
        self.pair = searched_pair(problem, self.search_teacher)
        offer = problem.archs if self.pair is None else np.intersect1d(problem.archs, problem.archs_of(self.pair))
        self.order = rng.permutation(offer)
        self.i = 0

    def ask(self):
        if self.i >= len(self.order):
            return None
        self.i += 1
        a = int(self.order[self.i - 1])
        return a if self.pair is None else Ask(a, pair=self.pair)
