#!/usr/bin/env python3
"""Train a pair's pending shards on a borrowed machine for a fixed time: one process per core, each calling
the same ``run_shard`` a submitit task calls, so the shards are the planned ones, written atomically, and
validate like any other (copy them back and ``generate`` skips them). It needs only torch, numpy, pyarrow,
safetensors and the dataset's own package, not the CLI's Hydra, submitit or polars: a node with a
preinstalled torch (the device machine here, a cluster's interactive node) runs it without installing the
project. Set ``DANAS_CODE_REVISION`` to the commit the copy holds, so that the shards say which commit made them
(it wins over git's answer, since a copied ``.git`` may be older than the files beside it).

  python3 scripts/burst_shards.py tables/shards/mnist1d__resnet_ens/<recipe_id> --only-seeds 0 1 --from-end \\
      --workers 16 --deadline 380 --rate 2.6

``--from-end`` takes the pending shards from the highest id down: a local ``generate`` working up from the
lowest id meanwhile meets them last, and skips them once they are copied in. ``--deadline S`` (seconds since
the script started) starts a shard only while it would end in time at the slowest rate seen so far (seconds per
architecture, times ``--margin``): shards differ in size (a seed's last one holds the remainder). The first wave
starts before any rate is known, so give S well over one shard's time, or ``--rate`` from an earlier burst, and
set the hard limit (``timeout``) a little past S. Before any worker starts, the parent computes one shard's
metadata and reads the stored FLOPs, so a missing package or file fails at once, not after a wave of training.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

T0 = time.monotonic()  # the deadline counts from here, as an outer `timeout` does (near enough)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

from danas_bench.core.paths import shard_path  # noqa: E402
from danas_bench.core.recipe import Recipe  # noqa: E402
from danas_bench.tables.generate import _only_seeds, auto_chunk, run_shard, shard_done, shard_meta  # noqa: E402
from danas_bench.tables.plan import Plan  # noqa: E402


def pending(d: Path, only_seeds: list[int] | None, from_end: bool) -> tuple[Plan, list[dict]]:
    """The plan and its shards not done yet (of ``only_seeds``; ValueError for a seed the plan lacks), highest
    ids first with ``from_end``."""
    plan = Plan.from_json((d / "plan.json").read_text())
    seeds = None if only_seeds is None else _only_seeds(only_seeds, plan)
    todo = [
        s
        for s in plan.shards
        if (seeds is None or s["seed"] in seeds) and not shard_done(shard_path(d, s["id"]), plan, s)
    ]
    return plan, sorted(todo, key=lambda s: s["id"], reverse=from_end)


def fits(elapsed: float, n_archs: int, rate: float | None, deadline: float, margin: float = 1.15) -> bool:
    """Whether a shard of ``n_archs`` started now ends before ``deadline`` at ``rate`` seconds per architecture
    (None: no rate known yet, so it starts)."""
    return rate is None or elapsed + margin * rate * n_archs < deadline


def preflight(plan: Plan) -> None:
    """What a shard reads besides training, done once here: a missing package or file fails now."""
    from danas_bench.training.engine import _stored_flops

    shard_meta(plan, plan.shards[0])  # the dataset, its split hashes, the teacher's accuracy, versions
    _stored_flops(Recipe.from_dict(plan.recipe))  # the archs file (pyarrow)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shard_dir", type=Path, help="a plan's folder: tables/shards/<dataset>__<teacher>/<recipe_id>")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="processes, one core each")
    ap.add_argument("--only-seeds", type=int, nargs="+", help="only the shards of these seeds")
    ap.add_argument("--from-end", action="store_true", help="highest shard ids first")
    ap.add_argument("--deadline", type=float, default=float("inf"), help="seconds by which started shards must end")
    ap.add_argument("--rate", type=float, help="seconds per architecture to assume before a shard has finished")
    ap.add_argument("--margin", type=float, default=1.15, help="safety factor on the rate")
    ap.add_argument("--chunk", type=int, help="students fused per engine call (default: generate's chunk=auto)")
    a = ap.parse_args(argv)
    if not (a.shard_dir / "plan.json").exists():
        ap.error(f"{a.shard_dir} holds no plan.json: give a plan's folder, written by `danas-bench generate`")
    os.environ["OMP_NUM_THREADS"] = "1"  # one core per process, as in generate
    sys.stdout.reconfigure(line_buffering=True)  # a log read while it runs, or cut by a time limit
    try:
        plan, todo = pending(a.shard_dir, a.only_seeds, a.from_end)
    except ValueError as e:
        ap.error(str(e))
    print(f"{plan.pair} {plan.recipe_id}: {len(todo)} shards pending, {a.workers} workers")
    if not todo:
        return 0
    preflight(plan)
    done, running, rate = 0, {}, a.rate
    pj, chunk = plan.to_json(), a.chunk or auto_chunk(Recipe.from_dict(plan.recipe))
    with ProcessPoolExecutor(a.workers, mp_context=get_context("spawn")) as ex:
        while todo or running:
            while (
                todo
                and len(running) < a.workers
                and fits(time.monotonic() - T0, len(todo[0]["archs"]), rate, a.deadline, a.margin)
            ):
                s = todo.pop(0)
                running[ex.submit(run_shard, str(a.shard_dir), pj, s["id"], chunk)] = (s, time.monotonic())
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                s, started = running.pop(f)
                f.result()  # a failed shard stops the burst with its error
                took = time.monotonic() - started
                done, rate = done + 1, max(rate or 0.0, took / len(s["archs"]))
                print(f"shard {s['id']} done at {time.monotonic() - T0:.0f} s in {took:.0f} s ({done} in all)")
    print(
        f"{done} shards in {time.monotonic() - T0:.0f} s; {len(todo)} not started; {rate or 0:.2f} s per architecture"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
