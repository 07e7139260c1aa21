"""TRADE: trust-region Bayesian optimisation of the KD student over the categorical cell.

Kim, Myeong & Yun (2022), "Revisiting Architecture-aware Knowledge Distillation: Smaller Models and
Faster Search" (TRADE, Trust Region Aware architecture search to Distill knowledge Effectively),
search student architectures under KD with trust-region BO. Here: TuRBO (Eriksson et al., 2019)
carried to NAS-Bench-201's six categorical edges, as in CASMOPOLITAN (Wan et al., 2021): the trust
region is a Hamming ball around the incumbent of the current region, the surrogate a BoTorch
``SingleTaskGP`` with a Matern-5/2 ARD kernel on the 30-dim one-hot encoding, the acquisition
Thompson sampling over the unpaid architectures inside the ball (a random subset of at most
``max_candidates``). TuRBO's rules: after ``success_tol`` (3) successes in a row the length doubles
(up to ``length_max``); after ``failure_tol`` failures in a row (TuRBO's max(4, dim) = 6) it halves;
below ``length_min`` the region restarts from a fresh random design of ``n_init`` points.
The ball's radius is ``max(1, round(length))`` edges.

Tabular adaptations (docs/searchers.md): distances are between canonical op lists; all data is kept
in the GP across restarts (TuRBO drops it; the budgets here are small); GP hyperparameters are
re-optimised when the data has doubled (and at least every ``refit_every`` points) and reused in
between.
"""

from __future__ import annotations

import numpy as np

from danas_bench.search import Ask, Searcher
from danas_bench.search.baselines._gp import GP


class TRADE(Searcher):
    name = "trade"
    defaults = {
        "n_init": 10,
        "length_init": 3.0,
        "length_min": 0.5,
        "length_max": 6.0,
        "success_tol": 3,
        "failure_tol": 6,
        "acquisition": "ts",
        "max_candidates": 256,
        "refit_every": 50,
        "maxiter": 30,
    }

    def setup(self, problem, rng: np.random.Generator) -> None:
        self.paid = np.zeros(len(problem.archs), dtype=bool)
        self.X: list[int] = []  # positions in problem.archs
        self.y: list[float] = []
        self.gp = GP(self.refit_every, self.maxiter)
        self.restarts = 0
        self._restart()

    def _restart(self) -> None:
        free = np.flatnonzero(~self.paid)
        k = min(self.n_init, len(free))
        self.queue = list(self.rng.choice(free, size=k, replace=False)) if k else []
        self.length = float(self.length_init)
        self.succ = self.fail = 0
        self.center: int | None = None
        self.tr_best = -np.inf

    def ask(self):
        if self.paid.all():
            return None
        while self.queue:
            pos = int(self.queue.pop())
            if not self.paid[pos]:
                return Ask(int(self.problem.archs[pos]))
        ops = self.problem.ops
        dist = (ops != ops[self.center]).sum(1)
        radius = max(1, int(round(self.length)))
        cand = np.flatnonzero((dist <= radius) & ~self.paid)
        while not len(cand):
            radius += 1
            cand = np.flatnonzero((dist <= radius) & ~self.paid)
        if len(cand) > self.max_candidates:
            cand = self.rng.choice(cand, size=self.max_candidates, replace=False)
        self.gp.fit(self.problem.onehot[self.X], np.array(self.y))
        if self.acquisition == "ts":
            pick = cand[self.gp.thompson(self.problem.onehot[cand], self.rng)]
        else:
            pick = cand[int(np.argmax(self.gp.log_ei(self.problem.onehot[cand])))]
        return Ask(int(self.problem.archs[pick]))

    def tell(self, ask: Ask, value: float) -> None:
        pos = self.problem.position(ask.arch)
        self.paid[pos] = True
        self.X.append(pos)
        self.y.append(value)
        if self.center is None:  # still in the initial design of this region
            if value > self.tr_best:
                self.tr_best, self.best_pos = value, pos
            if not self.queue:
                self.center = self.best_pos
            return
        if value > self.tr_best + 1e-3 * abs(self.tr_best):
            self.succ, self.fail = self.succ + 1, 0
        else:
            self.succ, self.fail = 0, self.fail + 1
        if value > self.tr_best:
            self.tr_best, self.center = value, pos
        if self.succ >= self.success_tol:
            self.length, self.succ = min(2 * self.length, self.length_max), 0
        elif self.fail >= self.failure_tol:
            self.length, self.fail = self.length / 2, 0
        if self.length < self.length_min:
            self.restarts += 1
            self._restart()
