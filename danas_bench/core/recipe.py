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
import re
from dataclasses import dataclass
from pathlib import Path

from danas_bench.core.paths import CONF_DIR

RECIPE_DIR = CONF_DIR / "recipe"
RECIPE_ID = re.compile(r"[0-9a-f]{16}")  # a recipe id: 16 hex digits of its hash
KD_TEMPERATURE = 4.0
KD_ALPHA = 0.9
LATE_FIELDS = ("valid_curve_n", "warmup_epochs", "autocast", "grad_clip")
AUTOCAST = ("bf16",)


def _finite(v) -> bool:
    """A finite int or float (not a bool, not a string)."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


@dataclass(frozen=True)
class Recipe:
    dataset: str
    width: int = 16  # channels of the first stage; doubled at each reduction
    cells: int = 1  # cells per stage
    stages: int = 3
    epochs: int = 10
    batch_size: int = 128
    n_train: int | None = None  # first n_train of the seeded train split (None: all)
    lr: float = 0.1  # SGD, Nesterov momentum, cosine to 0 (NAS-Bench-201's optimiser)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    valid_curve_n: int | None = None  # per-epoch valid acc on the first n valid examples (None: all)
    warmup_epochs: int | None = None  # linear learning-rate warmup from 0 before the cosine (None: none)
    autocast: str | None = None  # "bf16": the forward's convolutions and matmuls in bfloat16 (None: float32)
    grad_clip: float | None = None  # each student's whole gradient clipped to this L2 norm per step (None: off)

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
        if self.autocast is not None and self.autocast not in AUTOCAST:
            raise ValueError(
                f"recipe field autocast must be null or one of {', '.join(AUTOCAST)}, got {self.autocast!r}"
            )
        if self.grad_clip is not None and not (_finite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"recipe field grad_clip must be a finite number > 0 or null, got {self.grad_clip!r}")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if not (_finite(v) and v >= 0):
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
    def from_dict(cls, d: dict) -> Recipe:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}; valid fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **kw) -> Recipe:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class KD:
    """The distillation setting of a run; teacher ``none`` means plain cross-entropy (alpha = 0)."""

    teacher: str = "none"
    temperature: float = KD_TEMPERATURE
    alpha: float = KD_ALPHA

    def __post_init__(self):
        # checked before anything trains: a NaN or inf setting would train, cache a NaN row and never dedupe
        object.__setattr__(self, "temperature", check_kd("temperature", self.temperature))
        if self.teacher == "none":
            object.__setattr__(self, "alpha", 0.0)
        object.__setattr__(self, "alpha", check_kd("alpha", self.alpha))


KD_TEMPERATURE_MAX = 1000.0


def check_kd(name: str, value) -> float:
    """A KD ``temperature`` (finite, in (0, 1000]) or ``alpha`` (finite, in [0, 1]) as a float;
    ValueError naming the valid range otherwise (strings and bools are refused, not converted)."""
    import numbers

    lo, hi = (0.0, KD_TEMPERATURE_MAX) if name == "temperature" else (0.0, 1.0)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (lo < value <= hi if name == "temperature" else lo <= value <= hi):
        return float(value)
    valid = f"a finite number in (0, {hi:g}]" if name == "temperature" else "a finite number in [0, 1]"
    raise ValueError(f"KD {name} must be {valid}, got {value!r}")


def recipe_key(value) -> str | None:
    """A ``recipe_id=`` value from the command line as text; None (no ``recipe_id=``) stays None. Hydra
    reads an all-digit id as an int (zero-padded back to 16 digits here) and an id such as ``12345e67...``
    as a float, which cannot be recovered: that is refused with how to quote it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"recipe_id was read as the number {value!r}, not as a recipe id; quote it: recipe_id=\"'<id>'\""
        )
    return f"{value:016d}" if 0 <= value < 10**16 else str(value)


class RecipeMissing(ValueError):
    """A recipe file that does not exist (a dataset without a configured recipe, or an unknown version)."""


def recipe_for(dataset: str, override=None) -> Recipe:
    """The dataset's recipe. ``override``: None for the default (``conf/recipe/<dataset>.yaml``: either the
    fields, or only ``use: <version>``, the version it serves, so that promoting v2 is one line), a version
    name such as ``"v2"`` for ``conf/recipe/<dataset>-v2.yaml`` (every version stays reachable by its name),
    or a mapping of Recipe fields. RecipeMissing where the dataset has no recipe file; ValueError for a
    broken alias (a missing version, an alias to an alias, fields beside ``use:``)."""
    if override is not None and not isinstance(override, str):
        from omegaconf import DictConfig, OmegaConf

        d = OmegaConf.to_container(override) if isinstance(override, DictConfig) else dict(override)
        if "use" in d:  # Hydra's `+recipe=<dataset>`: the alias file, whichever dataset it was
            raise ValueError(
                f"recipe={d} is a dataset's alias file, not recipe fields; name a version with "
                f"recipe_version={d['use']} (conf/recipe/<dataset>-{d['use']}.yaml)"
            )
        d.setdefault("dataset", dataset)
        return Recipe.from_dict(d)
    _, d = _resolve(dataset, override)
    d["dataset"] = dataset
    return Recipe.from_dict(d)


def recipe_source(dataset: str, version: str | None = None) -> Path:
    """The file holding the fields ``recipe_for(dataset, version)`` reads: the version's own file, or the
    one the default file's ``use:`` names."""
    return _resolve(dataset, version)[0]


def recipe_id_of(dataset: str, name: str) -> str:
    """The recipe id ``name`` names for ``dataset``: a 16-hex id as it is, a version name such as ``v2`` as
    the id of ``conf/recipe/<dataset>-v2.yaml``; RecipeMissing where the dataset has no such version."""
    return name if RECIPE_ID.fullmatch(name) else recipe_for(dataset, name).recipe_id


def _resolve(dataset: str, override: str | None) -> tuple[Path, dict]:
    """(path, fields) of a recipe file, following the default file's alias (``use: <version>``)."""
    path, d = _recipe_file(dataset, override)
    if "use" in d:  # the default file names the version it serves (conf/recipe/<dataset>.yaml: use: v2)
        where = f"conf/recipe/{path.name}"
        if override is not None:
            raise ValueError(f"{where} is an alias (use: {d['use']}); a version's file holds the recipe fields")
        if set(d) != {"use"}:
            raise ValueError(f"{where}: an alias holds only `use: <version>`; it also has {sorted(set(d) - {'use'})}")
        version = str(d["use"])
        try:
            path, d = _recipe_file(dataset, version)
        except RecipeMissing as exc:  # the alias is configured but broken: not "no recipe"
            raise ValueError(f"{where} serves `use: {version}`, but {exc}") from None
        if "use" in d:
            raise ValueError(
                f"{where} serves `use: {version}`, but conf/recipe/{path.name} is itself an alias "
                f"(use: {d['use']}); name a version that holds the fields"
            )
    return path, d


def _recipe_file(dataset: str, version: str | None) -> tuple[Path, dict]:
    import yaml

    name = dataset if version is None else f"{dataset}-{version}"
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.exists():
        have = sorted(p.stem for p in RECIPE_DIR.glob(f"{dataset}*.yaml"))
        raise RecipeMissing(
            f"no recipe {name!r}: {path} is missing (recipes of {dataset}: {have or 'none'}); run "
            f"`danas-bench pilot datasets=[{dataset}]` or pass recipe={{width: 8, epochs: 4, ...}}"
        )
    return path, yaml.safe_load(path.read_text()) or {}
