"""danas-bench: a tabular benchmark for distillation-aware neural architecture search."""

__version__ = "0.1.0"
