"""What a bench knows besides training results: an architecture's params / FLOPs / latency (from
``archs-<recipe_id>.parquet``, computed live where it is missing) and a task's descriptor (the teacher's
logits summarised, which DaSS embeds a task with)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.pairs import TEACHERS
from danas_bench.query.columns import _np
from danas_bench.query.metrics import INFO, MissingRecord
from danas_bench.tables.manifest import check_listed


def read_arch_facts(dataset: str, recipe_id: str, root: Path, allow_unlisted: bool) -> tuple[dict, Path]:
    """(``{fact: float64 array over all indices, nan where missing}``, the file they come from)."""
    from danas_bench.core.paths import archs_file

    path = archs_file(dataset, recipe_id, root)
    facts = {k: np.full(space.N_ARCHS, np.nan) for k in INFO}
    if path.exists():
        check_listed(path, root, allow_unlisted)
        t = tb.read(path, columns=["arch_index", *INFO])
        a = _np(t.column("arch_index"))
        for k in INFO:
            facts[k][a] = _np(t.column(k), np.float64)
    return facts, path


def live_arch_facts(c: int, recipe, dataset: str) -> dict:
    """Params, FLOPs and latency of canonical architecture ``c``, measured here."""
    from danas_bench.tables import archinfo
    from danas_bench.training import data as data_mod

    f = archinfo.facts(c, recipe, data_mod.load(dataset))
    return {
        "arch_index": c,
        "params": int(f["params"]),
        "flops": int(f["flops"]),
        "latency_ms": float(f["latency_ms"]),
        "source": "live",
    }


_DESCRIPTORS: dict[tuple[str, str], np.ndarray] = {}


def logit_descriptor(dataset: str, teacher: str) -> np.ndarray:
    """Teacher accuracy, mean max-probability, mean normalised entropy at T = 1 and T = 4, mean top-1 /
    top-2 margin, log of the number of classes, and a ``none`` flag, from the teacher's cached
    validation logits (cached per process)."""
    key = (dataset, teacher)
    if key in _DESCRIPTORS:
        return _DESCRIPTORS[key]
    import torch
    from safetensors.torch import load_file

    from danas_bench.training import teachers as teachers_mod

    def valid_logits(t: str) -> torch.Tensor:
        # the shipped teacher files are all a descriptor needs (their accuracy is in their metadata): no raw
        # dataset on the search path; their sha256 is in the MANIFEST that `verify` checks
        path = teachers_mod.teacher_dir(dataset) / f"{t}.logits.safetensors"
        if not path.is_file():
            raise FileNotFoundError(
                f"no cached logits for teacher {dataset}/{t} at {path}: DaSS describes a task "
                f"by its teacher's logits; train it with `danas-bench teachers dataset={dataset}`"
            )
        return load_file(str(path))["valid"].float()

    if teacher == "none":
        c = valid_logits(TEACHERS[dataset][0]).shape[1]
        out = np.array([0, 0, 0, 0, 0, np.log(c), 1.0], dtype=np.float32)
    else:
        z = valid_logits(teacher)
        c = z.shape[1]
        acc = teachers_mod.info(dataset, teacher)["accuracy"]["valid"]
        p1 = torch.softmax(z, -1)
        p4 = torch.softmax(z / 4, -1)
        ent = lambda p: float((-(p * p.clamp_min(1e-12).log()).sum(-1) / np.log(c)).mean())  # noqa: E731
        top2 = p1.topk(2, -1).values
        out = np.array(
            [acc, float(top2[:, 0].mean()), ent(p1), ent(p4), float((top2[:, 0] - top2[:, 1]).mean()), np.log(c), 0.0],
            dtype=np.float32,
        )
    _DESCRIPTORS[key] = out
    return out


class ArchFacts:
    """One table's architecture facts: read from its archs file on first use, measured live (and kept
    in memory) where the file lacks an architecture, or MissingRecord under ``fallback="error"``."""

    def __init__(self, pair: str, recipe, root: Path, allow_unlisted: bool, fallback: str):
        self.pair, self.recipe, self.root = pair, recipe, root
        self.dataset = recipe.dataset
        self.allow_unlisted, self.fallback = allow_unlisted, fallback
        self._facts: tuple | None = None  # (facts, path)
        self._live: dict = {}

    def _known(self) -> dict:
        if self._facts is None:
            self._facts = read_arch_facts(self.dataset, self.recipe.recipe_id, self.root, self.allow_unlisted)
        return self._facts[0]

    def info(self, i: int) -> dict:
        c = int(space.canonical_table()[i])
        known = self._known()
        if not math.isnan(known["params"][c]):
            return {
                "arch_index": c,
                "params": int(known["params"][c]),
                "flops": int(known["flops"][c]),
                "latency_ms": float(known["latency_ms"][c]),
                "source": "table",
            }
        if c not in self._live:
            if self.fallback == "error":
                raise MissingRecord(
                    f"{self.pair}: no params/FLOPs/latency for architecture {c}: "
                    f"{self._facts[1]} is missing or lacks it; run `danas-bench archs "
                    f"dataset={self.dataset}` or open with fallback='live'"
                )
            self._live[c] = live_arch_facts(c, self.recipe, self.dataset)
        return dict(self._live[c])

    def info_many(self, idx: np.ndarray, key: str) -> np.ndarray:
        if key not in INFO:
            raise ValueError(f"unknown architecture fact {key!r}; valid: {', '.join(INFO)}")
        idx = space.canonical_table()[idx]
        vals = self._known()[key][idx]
        for j in np.nonzero(np.isnan(vals))[0]:
            vals[j] = self.info(int(idx[j]))[key]
        return vals
