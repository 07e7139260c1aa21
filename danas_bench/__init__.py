"""danas-bench: a tabular benchmark for distillation-aware neural architecture search."""

__version__ = "0.1.0"

# The query API, imported on first use so that `import danas_bench` stays light (no pyarrow, no torch):
# `danas_bench.open(pair)`, `danas_bench.open_all()`, `Bench`, `Budget`, `BudgetExhausted`, `MissingRecord`.
_LAZY = {"open": "query.bench", "open_all": "query.bench", "Bench": "query.bench", "MissingRecord": "query.bench",
         "Budget": "core.budget", "BudgetExhausted": "core.budget"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
