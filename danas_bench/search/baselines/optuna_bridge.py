"""The Optuna bridge: any Optuna sampler searches the cell through the same runner and budget.

Each edge is one parameter of the trial: a categorical over the 5 op names (TPE, NSGA-II, random,
QMC, GP ...) or, with ``encoding="int"`` (the default for CMA-ES, which has no categorical support),
an integer op id in [0, 4]. Optuna's ask-and-tell interface maps one to one onto the protocol:
``study.ask()`` -> ``Ask``, ``study.tell(trial, value)`` after the charged query.

Tabular adaptations: a trial naming an architecture already paid for (or one of its isomorphs) is
told its known value without a new query; after ``max_repeats`` such trials in a row the bridge asks
an unseen random architecture instead and adds it to the study as a finished trial. A trial naming an
architecture that is not on offer (a sampled table) is told as failed.

``OptunaSearcher(sampler="tpe")``; ``sampler`` is a name (tpe, random, nsga2, cmaes, qmc, gp) or an
``optuna.samplers.BaseSampler`` factory ``callable(seed) -> sampler``; ``sampler_options`` go to the
sampler's constructor.
"""

from __future__ import annotations

import numpy as np

from danas_bench.core import space
from danas_bench.search import Ask, Searcher, unseen_random


def _sampler(name, seed: int, options: dict):
    import optuna

    if callable(name):
        return name(seed)
    samplers = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "qmc": optuna.samplers.QMCSampler,
        "gp": getattr(optuna.samplers, "GPSampler", None),
    }
    cls = samplers.get(name)
    if cls is None:
        raise ValueError(
            f"unknown Optuna sampler {name!r}; choices: {', '.join(k for k, v in samplers.items() if v)}"
            f", or a callable seed -> sampler"
        )
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as e:
            raise ImportError("Optuna's CmaEsSampler needs the `cmaes` package: pip install cmaes") from e
    return cls(seed=seed, **options)


class OptunaSearcher(Searcher):
    name = "optuna"
    defaults = {"sampler": "tpe", "sampler_options": {}, "encoding": None, "max_repeats": 10}

    def preflight(self, problem) -> None:
        import optuna  # noqa: F401

        _sampler(self.sampler, 0, dict(self.sampler_options))  # cmaes and friends: their packages

    def setup(self, problem, rng: np.random.Generator) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = int(rng.integers(2**31 - 1))
        encoding = self.encoding or ("int" if self.sampler == "cmaes" else "categorical")
        if encoding == "categorical":
            dist = optuna.distributions.CategoricalDistribution(list(space.OPS))
        elif encoding == "int":
            dist = optuna.distributions.IntDistribution(0, space.N_OPS - 1)
        else:
            raise ValueError(f"encoding must be 'categorical' or 'int', got {encoding!r}")
        self.dists = {f"edge{e}": dist for e in range(space.N_EDGES)}
        self.study = optuna.create_study(
            direction="maximize", sampler=_sampler(self.sampler, seed, dict(self.sampler_options))
        )
        self.known: dict[int, float] = {}
        self.pending: dict[int, object] = {}
        self.on_offer = set(int(a) for a in problem.archs)
        self.canon = space.canonical_table()

    def _ops(self, params: dict) -> list[int]:
        return [
            space.OP_INDEX[v] if isinstance(v, str) else int(v)
            for v in (params[f"edge{e}"] for e in range(space.N_EDGES))
        ]

    def ask(self):
        import optuna

        for _ in range(self.max_repeats):
            trial = self.study.ask(self.dists)
            arch = int(self.canon[space.ops_to_index(self._ops(trial.params))])
            if arch not in self.on_offer:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            elif arch in self.known:
                self.study.tell(trial, self.known[arch])
            else:
                self.pending[arch] = trial
                return Ask(arch)
        # no new trial on offer in max_repeats asks: a random architecture (counted, reported)
        arch = unseen_random(self.problem, self.rng, self.known)
        return None if arch is None else Ask(arch, fallback=True)

    def tell(self, ask: Ask, value: float) -> None:
        import optuna

        self.known[ask.arch] = value
        trial = self.pending.pop(ask.arch, None)
        if trial is not None:
            self.study.tell(trial, value)
            return
        ops = space.index_to_ops(ask.arch)
        params = {
            f"edge{e}": (
                space.OPS[o] if isinstance(self.dists["edge0"], optuna.distributions.CategoricalDistribution) else o
            )
            for e, o in enumerate(ops)
        }
        self.study.add_trial(optuna.trial.create_trial(params=params, distributions=self.dists, value=value))
