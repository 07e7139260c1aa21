"""What a bench knows besides training results: an architecture's params / FLOPs / latency (from
``archs-<recipe_id>.parquet``, computed live where it is missing) and a task's descriptor (the teacher's
logits summarised, which DaSS embeds a task with)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.pairs import TEACHERS
from danas_bench.query.columns import _np
from danas_bench.query.metrics import INFO
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
