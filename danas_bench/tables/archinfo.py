"""Architecture-only facts per dataset and recipe: params, FLOPs, measured latency.

They depend on the architecture (and the recipe's widths), never on the teacher or seed, so they
are stored once per dataset in ``tables/<dataset>/archs-<recipe_id>.parquet``. FLOPs are counted by
``torch.utils.flop_counter`` for one forward pass of one sample (conv and linear; multiply-add = 2);
latency is a single-threaded eval forward of a batch, divided by its size, on the machine recorded in
the file's metadata.

Latency is measured **round-robin**: a block of architectures is timed one forward each, in turn, for
``LATENCY_ROUNDS`` rounds, and each keeps its fastest. Timing one architecture's repeats back to back
(the median of 5, until session 13) gives each architecture the machine's state of its own moment: on
300 digits students measured twice, that ranking agreed with itself at Spearman 0.27-0.76, round-robin at
0.93-0.95 (docs/generation.md). The students differ by tens of microseconds, less than a busy machine's drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.recipe import Recipe
from danas_bench.training import data as data_mod
from danas_bench.training.engine import count_flops
from danas_bench.training.student import build

LATENCY_BATCH = 64
LATENCY_ROUNDS = 10
LATENCY_BLOCK = 256  # architectures held and timed together (their models in memory at once)


def round_robin_latency(
    models: Sequence[Callable], x: torch.Tensor, rounds: int = LATENCY_ROUNDS, clock=time.perf_counter
) -> np.ndarray:
    """Milliseconds per sample of each model on ``x``: one untimed warm-up forward each, then ``rounds``
    rounds of one timed forward per model in turn; each model's fastest round."""
    best = np.full(len(models), np.inf)
    with torch.no_grad():
        for m in models:
            m(x)
        for _ in range(rounds):
            for j, m in enumerate(models):
                t0 = clock()
                m(x)
                best[j] = min(best[j], clock() - t0)
    return 1000.0 * best / len(x)


def _model(index: int, recipe: Recipe, ds: data_mod.Dataset) -> torch.nn.Module:
    return build(index, 0, ds.shape[0], ds.num_classes, ds.ndim, **recipe.widths()).eval()


def _static(index: int, model: torch.nn.Module, recipe: Recipe) -> dict:
    return {
        "arch_index": int(index),
        "arch": space.arch_str(index),
        "params": sum(p.numel() for p in model.parameters()),
        "flops": count_flops(int(index), recipe),
        "is_zero_cell": space.is_zero_cell(index),
    }


def facts(index: int, recipe: Recipe, ds: data_mod.Dataset) -> dict:
    """One architecture's facts, its latency timed alone (the live fallback's single architecture: no
    block to interleave with, so this latency is noisier than an archs file's)."""
    model = _model(index, recipe, ds)
    lat = round_robin_latency([model], ds.x["test"][:LATENCY_BATCH])[0]
    return {**_static(index, model, recipe), "latency_ms": float(lat)}


def facts_many(indices, recipe: Recipe, ds: data_mod.Dataset, progress=None) -> list[dict]:
    """Facts of many architectures, latency round-robin within blocks of ``LATENCY_BLOCK``; the blocks
    follow a seeded shuffle, so that slow drift across blocks is not aligned with the index order."""
    indices = [int(i) for i in indices]
    order = np.random.default_rng(0).permutation(len(indices))
    x = ds.x["test"][:LATENCY_BATCH]
    rows: dict[int, dict] = {}
    for start in range(0, len(order), LATENCY_BLOCK):
        block = [indices[j] for j in order[start : start + LATENCY_BLOCK]]
        models = [_model(i, recipe, ds) for i in block]
        for i, m, lat in zip(block, models, round_robin_latency(models, x)):
            rows[i] = {**_static(i, m, recipe), "latency_ms": float(lat)}
        if progress is not None:
            progress(len(block))
    return [rows[i] for i in indices]


def archs_path(recipe: Recipe, root: Path | None = None) -> Path:
    from danas_bench.core.paths import archs_file

    return archs_file(recipe.dataset, recipe.recipe_id, root)


def build_file(recipe: Recipe, root: Path | None = None, indices=None, log=print) -> Path:
    from tqdm import tqdm

    torch.set_num_threads(1)
    ds = data_mod.load(recipe.dataset)
    indices = space.canonical_indices() if indices is None else indices
    with tqdm(total=len(indices), desc=f"{recipe.dataset} arch facts", unit="arch") as bar:
        rows = facts_many(indices, recipe, ds, bar.update)
    meta = {
        "dataset": recipe.dataset,
        "recipe": recipe.to_dict(),
        "recipe_id": recipe.recipe_id,
        "units": {
            "params": "count",
            "flops": "FLOPs per forward pass of one sample (multiply-add = 2)",
            "latency_ms": f"milliseconds per sample, eval mode, batch {LATENCY_BATCH}, 1 thread, "
            f"fastest of {LATENCY_ROUNDS} round-robin rounds over blocks of {LATENCY_BLOCK}",
        },
        "flop_counter": "torch.utils.flop_counter.FlopCounterMode",
        "machine": tb.machine(),
        **tb.versions(),
    }
    out = archs_path(recipe, root)
    tb.write_atomic(tb.to_table(rows, meta, tb.ARCH_SCHEMA), out)
    from danas_bench.tables.manifest import update_manifest

    update_manifest(out, root, kind="archs", extra={"dataset": recipe.dataset})
    log(f"wrote {out} ({len(rows)} architectures)")
    return out
