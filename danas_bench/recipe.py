"""Training recipes: one per dataset, hashed into a ``recipe_id`` that every table row carries.

The KD temperature and weight are *not* part of the recipe id: they are per-row settings
(``kd_temperature``, ``kd_alpha``) so that the live fallback can train off-table KD settings
with the table's own recipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

KD_TEMPERATURE = 4.0
KD_ALPHA = 0.9
LATE_FIELDS = ("valid_curve_n", "warmup_epochs")


@dataclass(frozen=True)
class Recipe:
    dataset: str
    width: int = 16          # channels of the first stage; doubled at each reduction
    cells: int = 1           # cells per stage
    stages: int = 3
    epochs: int = 10
    batch_size: int = 128
    n_train: int | None = None  # first n_train of the seeded train split (None: all)
    lr: float = 0.1          # SGD, Nesterov momentum, cosine to 0 (NAS-Bench-201's optimiser)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    valid_curve_n: int | None = None  # per-epoch valid acc on the first n valid examples (None: all)
    warmup_epochs: int | None = None  # linear learning-rate warmup from 0 before the cosine (None: none)

    def __post_init__(self):
        for name in ("width", "cells", "stages", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"recipe field {name} must be a positive int, got {v!r}")
        for name in ("n_train", "valid_curve_n", "warmup_epochs"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"recipe field {name} must be a positive int or null, got {v!r}")
        if self.warmup_epochs is not None and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"recipe field {name} must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict:
        """The recipe's fields; fields added after the first tables shipped (``LATE_FIELDS``) appear
        only when set, so the ids of recipes that do not use them stay what the tables carry."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if not (k in LATE_FIELDS and v is None)}

    @property
    def recipe_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def widths(self) -> dict:
        return {"width": self.width, "cells": self.cells, "stages": self.stages}

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}; valid fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **kw) -> "Recipe":
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class KD:
    """The distillation setting of a run; teacher ``none`` means plain cross-entropy (alpha = 0)."""
    teacher: str = "none"
    temperature: float = KD_TEMPERATURE
    alpha: float = KD_ALPHA

    def __post_init__(self):
        if self.teacher == "none":
            object.__setattr__(self, "alpha", 0.0)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"KD alpha must lie in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"KD temperature must be > 0, got {self.temperature}")
