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

Fidelities (``fidelity="hyperband"``, the default; BOHB's budgets are training epochs): Hyperband
brackets (Li et al., 2018) with ``eta`` (3) from ``min_epoch`` to the recipe's epochs E; each bracket
draws its configurations (a point x, then one student from its family) and runs successive halving:
the best 1/eta of a rung go on to eta times the epochs, up to E. A query at epoch e reads the
validation accuracy after e epochs and is charged e/E of the architecture's time (and, under a
``fractional_queries`` budget, e/E of a query); a promoted student is queried again at its new epoch
(BOHB retrains from scratch too). As in BOHB, new configurations come from the model fitted on the
largest epoch with at least ``n_init`` observations (else uniform), with ``random_fraction`` (1/3)
uniform draws; here the model is the GP above rather than BOHB's kernel density estimator. Brackets
cycle until the budget ends. Only full-epoch queries can become the runner's incumbent.
``fidelity="none"``: every query at full fidelity (plain GP-BO).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from danas_bench.core import space
from danas_bench.search import Ask, Searcher, sample_policy
from danas_bench.search.baselines._gp import GP


class AutoKD(Searcher):
    name = "autokd"
    defaults = {
        "family": "per_edge",
        "sharpness": 8.0,
        "kd_search": False,
        "t_range": (1.0, 20.0),
        "alpha_range": (0.1, 1.0),
        "n_init": 10,
        "n_candidates": 1024,
        "local_sigma": 0.1,
        "refit_every": 50,
        "maxiter": 30,
        "fidelity": "hyperband",
        "eta": 3,
        "min_epoch": 1,
        "random_fraction": 1 / 3,
    }

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
        if self.fidelity not in ("hyperband", "none"):
            raise ValueError(f"fidelity must be 'hyperband' or 'none', got {self.fidelity!r}")
        self.E = int(problem.epochs or 1)
        # Hyperband needs epochs to vary: a bench without curves (or of one epoch) runs plain GP-BO
        self.hb = self.fidelity == "hyperband" and self.E > int(self.min_epoch)
        self.brackets = brackets(self.E, float(self.eta), int(self.min_epoch)) if self.hb else []
        self.obs: dict[int, tuple[list, list]] = {}  # epoch -> (points x, validation values)
        self.gps: dict[int, GP] = {}
        self.drawn = np.zeros(len(problem.archs), dtype=bool)  # students drawn as a configuration
        self.queue: deque = deque()  # (x, arch, epoch) of the current rung, still to ask
        self.results: list = []  # (value, x, arch) of the current rung
        self.bracket, self.rung, self.n_brackets = None, 0, 0
        self.known: dict[tuple[int, int], float] = {}  # (arch, epoch) answered: reused, never paid twice

    def _model_x(self, X: list, y: list, gp: GP) -> np.ndarray:
        rng = self.rng
        gp.fit(np.array(X), np.array(y))
        half = self.n_candidates // 2
        cand = [rng.random((half, self.dim))]
        top = np.argsort(y)[-5:]
        for i in top:
            cand.append(np.clip(X[i] + self.local_sigma * rng.standard_normal((half // 5, self.dim)), 0.0, 1.0))
        cand = np.concatenate(cand)
        return cand[int(np.argmax(gp.log_ei(cand)))]

    def _next_x(self) -> np.ndarray:
        if not self.hb:
            if len(self.y) < self.n_init:
                return self.rng.random(self.dim)
            return self._model_x(self.X, self.y, self.gp)
        # BOHB: the model of the largest epoch with enough observations; a share of uniform draws
        ready = [e for e, (_, y) in self.obs.items() if len(y) >= self.n_init]
        if not ready or self.rng.random() < self.random_fraction:
            return self.rng.random(self.dim)
        e = max(ready)
        return self._model_x(*self.obs[e], self.gps.setdefault(e, GP(self.refit_every, self.maxiter)))

    def _advance(self) -> None:
        """Fill the queue: promote the best of the finished rung, or start the next bracket."""
        if self.bracket is not None and self.rung + 1 < len(self.bracket) and self.results:
            self.rung += 1
            n, e = self.bracket[self.rung]
            best = sorted(self.results, key=lambda t: -t[0])[:n]
            self.results = []
            self.queue.extend((x, arch, e) for _, x, arch in best)
            return
        self.bracket = self.brackets[self.n_brackets % len(self.brackets)]
        self.n_brackets += 1
        self.rung, self.results = 0, []
        n, e = self.bracket[0]
        for _ in range(n):
            x = self._next_x()
            arch = sample_policy(self.problem, self.rng, self._logits(x), self.drawn | self.paid)
            if arch is None and (self.drawn & ~self.paid).any():
                # every student has been drawn: those stopped early may be drawn again (a table holds
                # their full-epoch answers; with a budget left, brackets go on instead of ending the run)
                self.drawn = self.paid.copy()
                for _, a, _ in self.queue:  # (not twice in one bracket)
                    self.drawn[self.problem.position(a)] = True
                arch = sample_policy(self.problem, self.rng, self._logits(x), self.drawn)
            if arch is None:
                break
            self.drawn[self.problem.position(arch)] = True
            self.queue.append((x, arch, e))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        w = x[: self.n_arch]
        if self.family == "per_op":
            w = np.broadcast_to(w, (space.N_EDGES, space.N_OPS))
        return self.sharpness * np.asarray(w).reshape(space.N_EDGES, space.N_OPS)

    def ask(self):
        epoch = None
        if self.hb:
            while True:
                if not self.queue:
                    self._advance()
                if not self.queue:
                    return None
                x, arch, e = self.queue.popleft()
                if (arch, e) not in self.known:
                    break
                self.results.append((self.known[arch, e], x, arch))  # a student redrawn: its answer
            epoch = None if e >= self.E else int(e)
        else:
            x = self._next_x()
            arch = sample_policy(self.problem, self.rng, self._logits(x), self.paid)
            if arch is None:
                return None
        self.pending = x
        if not self.kd:
            return Ask(arch, epoch=epoch)
        lo, hi = np.log(self.t_range[0]), np.log(self.t_range[1])
        t = float(np.exp(lo + x[self.n_arch] * (hi - lo)))
        a = float(self.alpha_range[0] + x[self.n_arch + 1] * (self.alpha_range[1] - self.alpha_range[0]))
        return Ask(arch, epoch=epoch, kd_temperature=round(t, 3), kd_alpha=round(a, 3))

    def tell(self, ask: Ask, value: float) -> None:
        e = self.E if ask.epoch is None else int(ask.epoch)
        if e >= self.E:
            self.paid[self.problem.position(ask.arch)] = True
            self.X.append(self.pending)
            self.y.append(value)
        self.known[ask.arch, e] = value
        X, y = self.obs.setdefault(e, ([], []))
        X.append(self.pending)
        y.append(value)
        if self.hb:
            self.results.append((value, self.pending, ask.arch))


def brackets(epochs: int, eta: float = 3.0, min_epoch: int = 1) -> list[list[tuple[int, int]]]:
    """Hyperband's brackets over epochs, most exploratory first: each a list of rungs (students, epochs),
    the students cut by ``eta`` and the epochs grown by ``eta`` from rung to rung, up to ``epochs``."""
    if eta <= 1:
        raise ValueError(f"eta must be > 1, got {eta}")
    s_max = max(0, int(math.floor(math.log(epochs / min_epoch) / math.log(eta) + 1e-9)))
    out = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta**s))
        rungs = []
        for i in range(s + 1):
            e = max(min_epoch, min(epochs, int(round(epochs * eta ** (i - s)))))
            rungs.append((max(1, int(math.floor(n * eta**-i))), e))
        out.append(rungs)
    return out
