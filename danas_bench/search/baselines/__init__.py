"""The shipped searchers, one module each; installed as ``danas_bench.search.baselines``.

``make(name, **options)`` builds a searcher by its registry name; ``NAMES`` lists them. Every searcher
speaks the ask/tell protocol of :mod:`danas_bench.search` and runs through :func:`danas_bench.search.run`.
"""

from __future__ import annotations

import importlib

# registry name -> (module, class, fixed options)
REGISTRY: dict[str, tuple[str, str, dict]] = {
    "random": ("random_search", "RandomSearch", {}),
    "evolution": ("evolution", "RegularizedEvolution", {}),  # NAS-without-KD
    "evolution_kd": ("evolution", "RegularizedEvolution", {"search_teacher": None}),  # control: KD signal
    "random_none": ("random_search", "RandomSearch", {"search_teacher": "none"}),  # control: no-KD signal
    "akd": ("akd", "AKD", {}),
    "autokd": ("autokd", "AutoKD", {}),
    "trade": ("trade", "TRADE", {}),
    "dass": ("dass", "DaSS", {}),
    "dass_paper": ("dass", "DaSS", {"mode": "paper"}),  # the paper's output: top-1, no student queried first
    "optuna": ("optuna_bridge", "OptunaSearcher", {}),
    "optuna_tpe": ("optuna_bridge", "OptunaSearcher", {"sampler": "tpe"}),
    "optuna_nsga2": ("optuna_bridge", "OptunaSearcher", {"sampler": "nsga2"}),
    "optuna_cmaes": ("optuna_bridge", "OptunaSearcher", {"sampler": "cmaes"}),
}
ALIASES = {"nas_without_kd": "evolution", "random_search": "random", "regularized_evolution": "evolution"}
SIX = ("random", "evolution", "akd", "autokd", "trade", "dass")
NAMES = tuple(REGISTRY)


def searcher_class(name: str):
    name = ALIASES.get(name, name)
    if name not in REGISTRY:
        raise KeyError(f"unknown searcher {name!r}; choices: {', '.join(NAMES)} (aliases: {', '.join(ALIASES)})")
    module, cls, _ = REGISTRY[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def make(name: str, **options):
    """A fresh searcher: ``make("trade", n_init=10)``; the registry name becomes its ``name``."""
    key = ALIASES.get(name, name)
    cls = searcher_class(key)
    searcher = cls(**{**REGISTRY[key][2], **options})
    searcher.name = key
    return searcher
