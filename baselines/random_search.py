"""Random search: uniform over the architectures on offer, without replacement.

The simplest baseline and, on NAS-Bench-201, a strong one (Li & Talwalkar, 2019; Dong & Yang, 2020).
Sampling is over canonical architectures, so isomorphic cells are never paid for twice.
"""

from __future__ import annotations

import numpy as np

from danas_bench.search import Searcher


class RandomSearch(Searcher):
    name = "random"
    defaults: dict = {}

    def setup(self, problem, rng: np.random.Generator) -> None:
        self.order = rng.permutation(problem.archs)
        self.i = 0

    def ask(self):
        if self.i >= len(self.order):
            return None
        self.i += 1
        return int(self.order[self.i - 1])
