"""NAS-without-KD: regularized evolution on plain cross-entropy accuracy, its pick scored with KD.

Real et al. (2019), as run on NAS-Bench-201 (Dong & Yang, 2020): a population of 10, tournaments of
3, one-edge mutation, the oldest member dies. The search reads the validation accuracy of the
dataset's ``none`` pair (students trained without a teacher): this is "search a student first,
distil it afterwards", the baseline AKD argues against. Its queries are charged like any other; the
runner's incumbent is the best no-KD validation accuracy, and the leaderboard scores that
architecture by its *KD* test accuracy on the pair under search.

Tabular adaptations (docs/searchers.md): children are canonicalised; a child already evaluated, or
outside the architectures both tables hold, is mutated again (up to ``max_retries``) and then
replaced by an unseen random architecture, so the budget is not spent on repeats.

``search_teacher=None`` (registry name ``evolution_kd``) runs the same evolution on the pair under
search (KD validation accuracy): the matched control that separates the signal searched on from the
algorithm when AKD or TRADE is compared with NAS-then-KD.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from danas_bench.core import space
from danas_bench.search import Ask, Searcher
from danas_bench.search.baselines.random_search import searched_pair


class RegularizedEvolution(Searcher):
    name = "evolution"
    defaults = {"population": 10, "tournament": 3, "search_teacher": "none", "max_retries": 20}

    def setup(self, problem, rng: np.random.Generator) -> None:
        self.pair = searched_pair(problem, self.search_teacher)
        # only architectures both tables hold: anything else would be trained live
        self.offer = problem.archs if self.pair is None else np.intersect1d(problem.archs, problem.archs_of(self.pair))
        if not len(self.offer):
            raise RuntimeError(f"{problem.pair} and {self.pair} hold no architecture in common")
        self.pop: deque[tuple[int, float]] = deque()
        self.evaluated: dict[int, float] = {}
        self.canon = space.canonical_table()

    def _child(self) -> int | None:
        rng = self.rng
        if len(self.pop) < self.population:
            return self._random()
        idx = rng.choice(len(self.pop), size=min(self.tournament, len(self.pop)), replace=False)
        parent = max((self.pop[i] for i in idx), key=lambda m: m[1])[0]
        for _ in range(self.max_retries):
            child = int(self.canon[space.mutate(parent, rng)])
            i = int(np.searchsorted(self.offer, child))
            if i < len(self.offer) and self.offer[i] == child and child not in self.evaluated:
                return child
        self._fell_back = True  # no new child in max_retries mutations: a random one (counted, reported)
        return self._random()

    def _random(self) -> int | None:
        for _ in range(32):
            a = int(self.offer[self.rng.integers(len(self.offer))])
            if a not in self.evaluated:
                return a
        left = np.setdiff1d(self.offer, np.fromiter(self.evaluated, dtype=np.int64, count=len(self.evaluated)))
        return int(left[self.rng.integers(len(left))]) if len(left) else None

    def ask(self):
        self._fell_back = False
        child = self._child()
        return None if child is None else Ask(child, pair=self.pair, fallback=self._fell_back)

    def tell(self, ask: Ask, value: float) -> None:
        self.evaluated[ask.arch] = value
        self.pop.append((ask.arch, value))
        if len(self.pop) > self.population:
            self.pop.popleft()
