"""AutoKD: Bayesian optimisation over a *family* of students and the KD temperature and weight.

Eyono et al. (2021), "AutoKD: Automatic Knowledge Distillation Into A Student Architecture Family",
search with BOHB over the hyperparameters of a student *family* (NAGO's generator) jointly with the KD
temperature T and weight alpha; each trial draws a student from the family and distils it.

Here: GP-BO (BoTorch ``SingleTaskGP``, Matern-5/2 ARD, log expected improvement) over x in [0, 1]^d.
The family is a per-edge categorical over the 5 ops (``family="per_edge"``, 30 dims; ``"per_op"``:
5 dims shared by every edge), with logits ``sharpness * x``; each trial draws one student from it
(among the architectures not yet paid for) and queries its validation accuracy. With
``kd_search=True`` two more dims set T (log-uniform in ``t_range``) and alpha (``alpha_range``): those
are off-table KD settings, which the real bench trains live (minutes per query, off by default so
that the leaderboard stays tabular). The acquisition is maximised over ``n_candidates`` points, half
uniform, half Gaussian perturbations (``local_sigma``) of the five best observed points (no gradient
optimiser: the objective, the accuracy of a random draw from the family, is noisy anyway).
"""

from __future__ import annotations

import numpy as np

from danas_bench import space
from danas_bench.search import Ask, Searcher, sample_policy

from ._gp import GP


class AutoKD(Searcher):
    name = "autokd"
    defaults = {"family": "per_edge", "sharpness": 8.0, "kd_search": False, "t_range": (1.0, 20.0),
                "alpha_range": (0.1, 1.0), "n_init": 10, "n_candidates": 1024, "local_sigma": 0.1,
                "refit_every": 50, "maxiter": 30}

    def setup(self, problem, rng: np.random.Generator) -> None:
        if self.family not in ("per_edge", "per_op"):
            raise ValueError(f"family must be 'per_edge' or 'per_op', got {self.family!r}")
        self.n_arch = space.N_EDGES * space.N_OPS if self.family == "per_edge" else space.N_OPS
        self.kd = bool(self.kd_search) and problem.teacher != "none"
        self.dim = self.n_arch + (2 if self.kd else 0)
        self.paid = np.zeros(len(problem.archs), dtype=bool)
        self.X: list[np.ndarray] = []
        self.y: list[float] = []
        self.gp = GP(self.refit_every, self.maxiter)
        self.pending: np.ndarray | None = None

    def _next_x(self) -> np.ndarray:
        rng = self.rng
        if len(self.y) < self.n_init:
            return rng.random(self.dim)
        self.gp.fit(np.array(self.X), np.array(self.y))
        half = self.n_candidates // 2
        cand = [rng.random((half, self.dim))]
        top = np.argsort(self.y)[-5:]
        for i in top:
            cand.append(np.clip(self.X[i] + self.local_sigma * rng.standard_normal((half // 5, self.dim)), 0.0, 1.0))
        cand = np.concatenate(cand)
        return cand[int(np.argmax(self.gp.log_ei(cand)))]

    def _logits(self, x: np.ndarray) -> np.ndarray:
        w = x[: self.n_arch]
        if self.family == "per_op":
            w = np.broadcast_to(w, (space.N_EDGES, space.N_OPS))
        return self.sharpness * np.asarray(w).reshape(space.N_EDGES, space.N_OPS)

    def ask(self):
        x = self._next_x()
        arch = sample_policy(self.problem, self.rng, self._logits(x), self.paid)
        if arch is None:
            return None
        self.pending = x
        if not self.kd:
            return Ask(arch)
        lo, hi = np.log(self.t_range[0]), np.log(self.t_range[1])
        t = float(np.exp(lo + x[self.n_arch] * (hi - lo)))
        a = float(self.alpha_range[0] + x[self.n_arch + 1] * (self.alpha_range[1] - self.alpha_range[0]))
        return Ask(arch, kd_temperature=round(t, 3), kd_alpha=round(a, 3))

    def tell(self, ask: Ask, value: float) -> None:
        self.paid[self.problem.position(ask.arch)] = True
        self.X.append(self.pending)
        self.y.append(value)
