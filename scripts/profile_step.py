"""Where a fused training step and one evaluation go (torch profiler, one core): shares by op, for a
recipe before a long generation. Shares, not seconds: run it beside other jobs and the seconds drift.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/profile_step.py            # fashion-mnist, w4 bs32 n1000
    OMP_NUM_THREADS=1 .venv/bin/python scripts/profile_step.py --recipe v2 --dataset mnist1d
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_ab import Run  # noqa: E402

from danas_bench.core import space  # noqa: E402
from danas_bench.core.recipe import KD, Recipe, recipe_for  # noqa: E402
from danas_bench.training import engine  # noqa: E402
from danas_bench.training.engine import Task  # noqa: E402

# fashion-mnist's recipe-search candidates at width 4 (all but two): 30 epochs of 1,000 images, batch 32
FASHION_W4 = dict(width=4, epochs=30, batch_size=32, n_train=1000, lr=0.03, warmup_epochs=3, valid_curve_n=500)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--recipe", default=None, help="a version (v2); default: fashion-mnist's width-4 candidate")
    ap.add_argument("--teacher", default="resnet")
    ap.add_argument("--n", type=int, default=48, help="students fused as one model")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rows", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    r = recipe_for(args.dataset, args.recipe) if args.recipe else Recipe(args.dataset, **FASHION_W4)
    task = Task.make(r, KD(args.teacher))
    archs = [int(a) for a in np.sort(np.random.default_rng(0).choice(space.canonical_indices(), args.n, replace=False))]
    engine.keep_freed_memory()
    run = Run(engine, task, archs, args.n, 0)
    x, _, _ = task.train_split()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    batches = [perm[i : i + r.batch_size] for i in range(0, r.batch_size * (args.steps + 2), r.batch_size)]
    run.steps(batches[:2])  # warm-up: the C kernels' build, first allocations
    with profile(activities=[ProfilerActivity.CPU]) as p:
        run.steps(batches[2:])
    print(f"{args.dataset} {r.recipe_id}: {args.steps} training steps of {args.n} fused students")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    vx = task.dataset.x["valid"][: r.valid_curve_n or len(task.dataset.x["valid"])]
    with profile(activities=[ProfilerActivity.CPU]) as p:
        run.evaluate(vx)
    print(f"one evaluation of {len(vx)} valid examples")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
