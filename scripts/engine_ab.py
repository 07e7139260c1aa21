"""Interleaved A/B of the fused engine: two versions (git revisions or the working tree) or two chunk
sizes, in ONE process, in alternating blocks, timed in process CPU seconds.

The machine is shared and its speed drifts over minutes, so absolute times from separate runs do not
compare; blocks of each configuration alternate (A B A B ...) and the ratio of the medians is the
measurement. A block is one epoch of the recipe for every configuration: ``--steps`` training steps
(default: the recipe's steps per epoch) and one evaluation of the per-epoch curve's valid examples,
timed separately. Every configuration trains the same ``--n`` architectures of one seed (as n / K
fused models of K) from the same initial weights on the same minibatches, so the script also says
whether the configurations give the same valid logits at the end.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/engine_ab.py HEAD:64 worktree:64 --blocks 10
    OMP_NUM_THREADS=1 .venv/bin/python scripts/engine_ab.py worktree:32 worktree:64 worktree:128 --n 128

A configuration is ``REV:K``: a git revision (its ``danas_bench`` package is exported to a temporary
folder and imported beside the working tree's) or ``worktree``, and the number of students fused per
model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_engine(rev: str, tmp: Path):
    """The ``danas_bench.training.engine`` module of ``rev``, imported under its own module objects."""
    src = ROOT
    if rev != "worktree":
        src = tmp / rev.replace("/", "_")
        src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "danas_bench"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    ours = [m for m in sys.modules if m == "danas_bench" or m.startswith("danas_bench.")]
    for m in ours:
        del sys.modules[m]
    sys.path.insert(0, str(src))
    try:
        import danas_bench.training.engine as engine
    finally:
        sys.path.remove(str(src))
        for m in [m for m in sys.modules if m == "danas_bench" or m.startswith("danas_bench.")]:
            del sys.modules[m]  # the next version imports afresh; this one keeps its module objects
    return engine


class Run:
    """One configuration: n architectures as n / k fused models, their optimisers and schedules."""

    def __init__(self, engine, task, archs: list[int], k: int, seed: int):
        self.engine, self.task, self.k = engine, task, k
        self.models = [
            engine.FusedStudents(engine._students(archs[i : i + k], seed, task)) for i in range(0, len(archs), k)
        ]
        x, _, _ = task.train_split()
        self.opts = [engine.optimizer(m, task.recipe, True) for m in self.models]
        self.scheds = [engine.lr_schedule(o, task.recipe, len(x)) for o in self.opts]

    def steps(self, batches) -> None:
        x, y, t = self.task.train_split()
        for model, opt, sched in zip(self.models, self.opts, self.scheds):
            for idx in batches:
                logits = model(x[idx])
                loss, _ = self.engine._loss(logits, y[idx], None if t is None else t[idx], self.task.kd)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()

    def evaluate(self, vx) -> torch.Tensor:
        # the revision's own evaluation batch (before eval_batch existed: 128 on the CPU)
        pick = getattr(self.engine, "eval_batch", lambda dev, shape: 128)
        bs = pick(torch.device("cpu"), self.task.dataset.shape)
        return torch.cat([self.engine._predict(m, vx, bs) for m in self.models], 1)  # (N, n archs, C)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="REV:K, e.g. HEAD:64 worktree:64")
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--recipe", default="v2")
    ap.add_argument("--teacher", default="resnet")
    ap.add_argument("--n", type=int, default=64, help="architectures (a multiple of every K)")
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--steps", type=int, default=None, help="training steps per block (default: one epoch)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from danas_bench.core import space
    from danas_bench.core.recipe import KD, recipe_for
    from danas_bench.training.engine import Task

    recipe = recipe_for(args.dataset, args.recipe)
    task = Task.make(recipe, KD(args.teacher))
    archs = [int(a) for a in np.sort(np.random.default_rng(0).choice(space.canonical_indices(), args.n, replace=False))]
    n_train = len(task.train_split()[0])
    steps = args.steps or -(-n_train // recipe.batch_size)
    vx = task.dataset.x["valid"][: recipe.valid_curve_n]  # what one epoch's curve evaluates (None: all)
    with tempfile.TemporaryDirectory() as tmp:
        engines = {}
        for c in args.configs:
            rev = c.rsplit(":", 1)[0]
            if rev not in engines:
                engines[rev] = load_engine(rev, Path(tmp))
        runs = []
        for c in args.configs:
            rev, k = c.rsplit(":", 1)
            engines[rev].keep_freed_memory()
            runs.append(Run(engines[rev], task, archs, int(k), args.seed))
        gen = torch.Generator().manual_seed(args.seed)
        times = {c: {"step": [], "eval": []} for c in args.configs}
        logits = {}
        for block in range(args.blocks + 1):  # block 0 warms up (the C kernels' build, first allocations)
            perm = torch.randperm(n_train, generator=gen)
            batches = [perm[i : i + recipe.batch_size] for i in range(0, n_train, recipe.batch_size)][:steps]
            order = list(zip(args.configs, runs))
            for c, run in order if block % 2 else order[::-1]:
                t0 = time.process_time()
                run.steps(batches)
                t1 = time.process_time()
                logits[c] = run.evaluate(vx)
                t2 = time.process_time()
                if block:
                    times[c]["step"].append(t1 - t0)
                    times[c]["eval"].append(t2 - t1)
    base = args.configs[0]
    print(
        f"{args.dataset} {args.recipe} ({recipe.recipe_id}), teacher {args.teacher}, {args.n} archs, "
        f"{args.blocks} blocks of {steps} steps + a valid evaluation ({len(vx)} samples), CPU s per block"
    )
    for c in args.configs:
        t = {key: np.array(v) for key, v in times[c].items()}
        epoch = t["step"] + t["eval"]
        ref = {key: np.array(v) for key, v in times[base].items()}
        ratio = np.median(ref["step"] + ref["eval"]) / np.median(epoch)
        same = ""
        if c != base:  # the same architectures in the same order, whatever K
            d = (logits[c] - logits[base]).abs().max().item()
            same = ", valid logits identical" if d == 0 else f", valid logits max abs diff {d:.3g}"
        print(
            f"  {c:>16}: step {np.median(t['step']):.3f}  eval {np.median(t['eval']):.3f}  epoch "
            f"{np.median(epoch):.3f} s  ({np.median(epoch) / args.n * 1000:.1f} ms/arch; speed-up vs {base}: "
            f"step {np.median(ref['step']) / np.median(t['step']):.3f}, eval "
            f"{np.median(ref['eval']) / np.median(t['eval']):.3f}, epoch {ratio:.3f}{same})"
        )


if __name__ == "__main__":
    main()
