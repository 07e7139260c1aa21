"""Architecture-only facts per dataset and recipe: params, FLOPs, measured latency.

They depend on the architecture (and the recipe's widths), never on the teacher or seed, so they
are stored once per dataset in ``tables/<dataset>/archs-<recipe_id>.parquet``. FLOPs are counted by
``torch.utils.flop_counter`` for one forward pass of one sample (conv and linear; multiply-add = 2);
latency is the median of repeated single-threaded eval forwards of a batch, divided by its size, on
the machine recorded in the file's metadata.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from danas_bench.training import data as data_mod
from danas_bench.core import space
from danas_bench.core import schema as tb
from danas_bench.training.engine import count_flops
from danas_bench.core.recipe import Recipe
from danas_bench.training.student import build

LATENCY_BATCH = 64
LATENCY_REPEATS = 5


def facts(index: int, recipe: Recipe, ds: data_mod.Dataset) -> dict:
    model = build(index, 0, ds.shape[0], ds.num_classes, ds.ndim, **recipe.widths()).eval()
    x = ds.x["test"][:LATENCY_BATCH]
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(LATENCY_REPEATS):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return {"arch_index": int(index), "arch": space.arch_str(index),
            "params": sum(p.numel() for p in model.parameters()),
            "flops": count_flops(int(index), recipe),
            "latency_ms": 1000.0 * statistics.median(times) / len(x),
            "is_zero_cell": space.is_zero_cell(index)}


def archs_path(recipe: Recipe, root: Path | None = None) -> Path:
    from danas_bench.core.paths import archs_file

    return archs_file(recipe.dataset, recipe.recipe_id, root)


def build_file(recipe: Recipe, root: Path | None = None, indices=None, log=print) -> Path:
    from tqdm import tqdm

    torch.set_num_threads(1)
    ds = data_mod.load(recipe.dataset)
    indices = space.canonical_indices() if indices is None else indices
    rows = [facts(int(i), recipe, ds) for i in tqdm(indices, desc=f"{recipe.dataset} arch facts", unit="arch")]
    meta = {"dataset": recipe.dataset, "recipe": recipe.to_dict(), "recipe_id": recipe.recipe_id,
            "units": {"params": "count", "flops": "FLOPs per forward pass of one sample (multiply-add = 2)",
                      "latency_ms": f"milliseconds per sample, eval mode, batch {LATENCY_BATCH}, 1 thread, "
                                    f"median of {LATENCY_REPEATS}"},
            "flop_counter": "torch.utils.flop_counter.FlopCounterMode", "machine": tb.machine(), **tb.versions()}
    out = archs_path(recipe, root)
    tb.write_atomic(tb.to_table(rows, meta, tb.ARCH_SCHEMA), out)
    from danas_bench.tables.manifest import update_manifest

    update_manifest(out, root, kind="archs", extra={"dataset": recipe.dataset})
    log(f"wrote {out} ({len(rows)} architectures)")
    return out
