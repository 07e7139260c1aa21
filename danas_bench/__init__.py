"""danas-bench: a tabular benchmark for distillation-aware neural architecture search."""

__version__ = "0.1.0"

# The public API, imported on first use so that `import danas_bench` stays light (no pyarrow, no torch):
# `danas_bench.open(pair)`, `danas_bench.open_all()`, `Bench`, `Budget`, `BudgetExhausted`, `MissingRecord`,
# and the search space module (`from danas_bench import space`: architecture strings, indices, isomorphism).
_LAZY = {
    "open": "query.bench",
    "open_all": "query.bench",
    "Bench": "query.bench",
    "MissingRecord": "query.bench",
    "Budget": "core.budget",
    "BudgetExhausted": "core.budget",
}
_MODULES = {"space": "core.space"}
__all__ = ["__version__", *_LAZY, *_MODULES]


def __getattr__(name):
    import importlib

    if name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
