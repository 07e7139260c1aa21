#!/usr/bin/env python3
"""Train a pair's pending shards on a borrowed machine for a fixed time: one process per core, each calling
the same ``run_shard`` a submitit task calls, so the shards are the planned ones, written atomically, and
validate like any other (copy them back and ``generate`` skips them). It needs only torch, numpy, pyarrow,
safetensors and the dataset's own package, not the CLI's Hydra, submitit or polars: a node with a
preinstalled torch (the device machine here, a cluster's interactive node) runs it without installing the
project. Without ``.git`` beside the code, set ``DANAS_CODE_REVISION`` so the shards say which commit made them.

  python3 scripts/burst_shards.py tables/shards/mnist1d__resnet_ens/<recipe_id> --only-seeds 0 1 --from-end \\
      --workers 16 --deadline 520

``--from-end`` takes the pending shards from the highest id down: a local ``generate`` working up from the
lowest id meanwhile meets them last, and skips them once they are copied in. ``--deadline S`` starts a shard
only while the slowest shard so far would still end before S seconds, so a hard time limit (``timeout``) set a
little past S loses none in flight.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, installed or not

from danas_bench.core.paths import shard_path  # noqa: E402
from danas_bench.core.recipe import Recipe  # noqa: E402
from danas_bench.tables.generate import auto_chunk, run_shard, shard_done  # noqa: E402
from danas_bench.tables.plan import Plan  # noqa: E402


def pending(d: Path, only_seeds: list[int] | None, from_end: bool) -> tuple[Plan, list[int]]:
    plan = Plan.from_json((d / "plan.json").read_text())
    todo = [
        s["id"]
        for s in plan.shards
        if (only_seeds is None or s["seed"] in only_seeds) and not shard_done(shard_path(d, s["id"]), plan, s)
    ]
    return plan, sorted(todo, reverse=from_end)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shard_dir", type=Path, help="a plan's folder: tables/shards/<dataset>__<teacher>/<recipe_id>")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="processes, one core each")
    ap.add_argument("--only-seeds", type=int, nargs="+", help="only the shards of these seeds")
    ap.add_argument("--from-end", action="store_true", help="highest shard ids first")
    ap.add_argument("--deadline", type=float, default=float("inf"), help="seconds by which started shards must end")
    ap.add_argument("--chunk", type=int, help="students fused per engine call (default: generate's chunk=auto)")
    a = ap.parse_args(argv)
    if not (a.shard_dir / "plan.json").exists():
        ap.error(f"{a.shard_dir} holds no plan.json: give a plan's folder, written by `danas-bench generate`")
    os.environ["OMP_NUM_THREADS"] = "1"  # one core per process, as in generate
    sys.stdout.reconfigure(line_buffering=True)  # a log read while it runs, or cut by a time limit
    plan, todo = pending(a.shard_dir, a.only_seeds, a.from_end)
    print(f"{plan.pair} {plan.recipe_id}: {len(todo)} shards pending, {a.workers} workers")
    t0, done, running, slowest = time.monotonic(), 0, {}, 0.0
    pj, chunk = plan.to_json(), a.chunk or auto_chunk(Recipe.from_dict(plan.recipe))
    with ProcessPoolExecutor(a.workers, mp_context=get_context("spawn")) as ex:
        while todo or running:
            while todo and len(running) < a.workers and time.monotonic() - t0 + slowest < a.deadline:
                sid = todo.pop(0)
                running[ex.submit(run_shard, str(a.shard_dir), pj, sid, chunk)] = (sid, time.monotonic())
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                sid, started = running.pop(f)
                f.result()  # a failed shard stops the burst with its error
                done, slowest = done + 1, max(slowest, time.monotonic() - started)
                print(f"shard {sid} done at {time.monotonic() - t0:.0f} s ({done} in all; slowest {slowest:.0f} s)")
    print(f"{done} shards in {time.monotonic() - t0:.0f} s; {len(todo)} not started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
