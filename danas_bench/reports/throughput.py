"""Throughput benchmark: the fused engine against the plain one-architecture loop, in one run.

For each tier-S recipe, on the same seeded sample of canonical architectures and the same seed:

* plain loop: :func:`danas_bench.training.engine.train_plain`, one architecture at a time, in three parts
  around the engine's two runs (the machine's speed drifts; this brackets the engine);
* engine: :func:`danas_bench.training.engine.train_many`, ``chunk`` architectures fused, run with seed 0 and
  seed 1 (the seed-to-seed difference), its time the mean of the two;

both in this one process with one thread, timed by the process CPU clock, so the figures are per core and
less sensitive to other jobs on the machine. It reports architectures per
core-hour for both and their ratio, the equivalence of the results (mean and max |test acc
difference| between engine and plain, next to the seed-to-seed difference of the engine), and the
distance to the machine's limit (the recipe's training FLOPs per architecture over the FLOP rate a
large matmul reaches on one core). Run: ``python -m danas_bench.reports.throughput`` (``--help``).

``--device cuda`` runs both sides on a GPU: the figures are then per GPU (wall seconds of the device,
synchronised), and the limit is a large float32 matmul's rate on that GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from danas_bench.core import space
from danas_bench.core.recipe import KD
from danas_bench.training import data as data_mod
from danas_bench.training.engine import Task, _clock, check_device, forward_flops, train_many, train_plain


def matmul_gflops(n: int = 1024, reps: int = 20, device: str = "cpu") -> float:
    dev = torch.device(device)
    if dev.type != "cpu":  # a GPU needs a larger product to reach its rate
        n, reps = 8192, 50
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    clock = _clock(dev) if dev.type != "cpu" else time.perf_counter
    for _ in range(3):
        a @ b
    t0 = clock()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (clock() - t0) / 1e9


def training_flops(index: int, task: Task) -> float:
    """FLOPs of one architecture's whole run: 3x forward per training sample, 1x per evaluation."""
    r, sizes = task.recipe, task.dataset.sizes()
    n_train = r.n_train or sizes["train"]
    curve = min(r.valid_curve_n or sizes["valid"], sizes["valid"])
    evals = r.epochs * curve + sizes["valid"] + sizes["test"]
    return forward_flops(index, r) * (3.0 * n_train * r.epochs + evals)


def bench_recipe(recipe, teacher: str, n: int, chunk: int, seed: int = 0, log=print, device: str = "cpu") -> dict:
    task = Task.make(recipe, KD(teacher), device)
    clock = _clock(torch.device(task.device))
    archs = [int(a) for a in np.sort(np.random.default_rng(seed).choice(space.canonical_indices(), n, replace=False))]
    # this machine's speed drifts over minutes, and the plain loop's more than the engine's: the plain
    # loop runs in three parts around the engine's two runs (seed 0, and seed 1 for the seed-to-seed
    # difference), and the engine's time is the mean of its two runs, so that a drift cannot pass for
    # a speed-up (or hide one)
    parts = np.array_split(np.arange(n), 3)
    plain, t_parts, t_runs, runs = [], [], [], {}
    for what in ("plain", 0, "plain", 1, "plain"):
        t0 = clock()
        if what == "plain":
            plain += [train_plain(archs[i], 0, task) for i in parts[len(t_parts)]]
            t_parts.append(clock() - t0)
        else:
            runs[what] = [rec for i in range(0, n, chunk) for rec in train_many(archs[i : i + chunk], what, task)]
            t_runs.append(clock() - t0)
    t_plain, t_eng = sum(t_parts), float(np.mean(t_runs))
    eng, eng1 = runs[0], runs[1]
    log(f"  engine:     {n} archs in {t_eng:.1f}s (mean of seed 0 {t_runs[0]:.1f}s and seed 1 {t_runs[1]:.1f}s)")
    log(
        f"  plain loop: {n} archs in {t_plain:.1f}s (parts of {', '.join(str(len(q)) for q in parts)} archs: "
        f"{', '.join(f'{t:.1f}s' for t in t_parts)})"
    )
    a_plain = np.array([r["test_acc"] for r in plain])
    a_eng = np.array([r["test_acc"] for r in eng])
    a_eng1 = np.array([r["test_acc"] for r in eng1])
    flops = float(np.mean([training_flops(a, task) for a in archs]))
    peak = matmul_gflops(device=task.device)
    per_hour_plain, per_hour_eng = 3600 * n / t_plain, 3600 * n / t_eng
    return {
        "dataset": recipe.dataset,
        "teacher": teacher,
        "recipe": recipe.to_dict(),
        "recipe_id": recipe.recipe_id,
        "n_archs": n,
        "chunk": chunk,
        **_device_fields(task.device),
        "plain_seconds": t_plain,
        "engine_seconds": t_eng,
        "plain_seconds_parts": t_parts,
        "plain_archs_parts": [len(q) for q in parts],
        "engine_seconds_seed0": t_runs[0],
        "engine_seconds_seed1": t_runs[1],
        "plain_archs_per_core_hour": per_hour_plain,
        "engine_archs_per_core_hour": per_hour_eng,
        "speedup": per_hour_eng / per_hour_plain,
        "equiv_mean_abs_diff": float(np.mean(np.abs(a_eng - a_plain))),
        "equiv_max_abs_diff": float(np.max(np.abs(a_eng - a_plain))),
        "seed_mean_abs_diff": float(np.mean(np.abs(a_eng - a_eng1))),
        "seed_max_abs_diff": float(np.max(np.abs(a_eng - a_eng1))),
        # no bias either way: the mean test accuracy of each run over the sample
        "plain_mean_test_acc": float(a_plain.mean()),
        "engine_mean_test_acc": float(a_eng.mean()),
        "engine_seed1_mean_test_acc": float(a_eng1.mean()),
        "train_gflop_per_arch": flops / 1e9,
        "matmul_gflops_one_core": peak,
        "limit_archs_per_core_hour": 3600 * peak * 1e9 / flops,
        "engine_share_of_limit": per_hour_eng / (3600 * peak * 1e9 / flops),
    }


def _device_fields(device: str) -> dict:
    """Where it ran: recorded only off the CPU, so CPU results keep their fields."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return {}
    return {"device": device, "device_name": torch.cuda.get_device_name(dev), "torch_cuda": torch.version.cuda}


def report(results: list[dict], path: Path) -> None:
    lines = [
        "## Throughput: engine vs plain loop",
        "",
        "Generated by `python -m danas_bench.reports.throughput` (one process, one thread: figures are per core).",
        "",
        "| recipe | archs | plain archs/core-h | engine archs/core-h | speedup | engine vs plain \\|test acc\\| "
        "mean / max | seed-to-seed mean / max | mean test acc plain / engine / engine seed 1 | GFLOP/arch | "
        "matmul GFLOP/s | limit archs/core-h | engine / limit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']}/{r['teacher']} `{r['recipe_id']}`{_on(r)} | {r['n_archs']} | "
            f"{r['plain_archs_per_core_hour']:.0f} | "
            f"{r['engine_archs_per_core_hour']:.0f} | **{r['speedup']:.2f}x** | {r['equiv_mean_abs_diff']:.4f} / "
            f"{r['equiv_max_abs_diff']:.4f} | {r['seed_mean_abs_diff']:.4f} / {r['seed_max_abs_diff']:.4f} | "
            f"{_means(r)} | "
            f"{r['train_gflop_per_arch']:.2f} | {r['matmul_gflops_one_core']:.0f} | "
            f"{r['limit_archs_per_core_hour']:.0f} | "
            f"{100 * r['engine_share_of_limit']:.1f}% |"
        )
    path.write_text("\n".join(lines) + "\n")


def _on(r: dict) -> str:
    return f" on {r['device_name']} (per GPU, not per core)" if r.get("device") else ""


def _means(r: dict) -> str:
    keys = ("plain_mean_test_acc", "engine_mean_test_acc", "engine_seed1_mean_test_acc")
    return " / ".join(f"{r[k]:.3f}" for k in keys) if all(k in r for k in keys) else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"])
    ap.add_argument("--n", type=int, default=64, help="architectures in the sample (>= 50 for the equivalence check)")
    ap.add_argument("--chunk", type=int, default=64, help="architectures fused per engine call")
    ap.add_argument("--out", default="docs/throughput.json")
    ap.add_argument(
        "--recipe",
        default=None,
        help="recipe version, e.g. v2 (conf/recipe/<dataset>-v2.yaml); default: each dataset's current recipe",
    )
    ap.add_argument("--device", default="cpu", help="cpu (one thread), cuda or cuda:<n>: where both sides train")
    ap.add_argument("--teacher", default="resnet", help="the KD teacher (its logits must be trained), or none")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (a short GPU measurement)")
    ap.add_argument("--n-train", type=int, default=None, help="override the recipe's training examples")
    args = ap.parse_args(argv)
    try:
        check_device(args.device)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(1)
    from danas_bench.core.recipe import recipe_for

    results = []
    for ds in args.datasets:
        recipe = recipe_for(ds, args.recipe)
        over = {k: v for k, v in (("epochs", args.epochs), ("n_train", args.n_train)) if v is not None}
        if over:
            recipe = recipe.replace(
                **over,
                warmup_epochs=None
                if recipe.warmup_epochs is None or recipe.warmup_epochs >= over.get("epochs", recipe.epochs)
                else recipe.warmup_epochs,
            )
        data_mod.load(ds)
        print(f"{ds}: recipe {recipe.recipe_id} on {args.device}")
        results.append(bench_recipe(recipe, args.teacher, args.n, args.chunk, device=args.device))
        print(json.dumps(results[-1], indent=1))
    out = Path(args.out)
    # keep the other datasets' results of an earlier run: each dataset can be benchmarked on its own
    earlier = json.loads(out.read_text()) if out.exists() else []
    done = {(r["dataset"], r.get("device", "cpu")) for r in results}  # a GPU run keeps the CPU figures
    results = [r for r in earlier if (r["dataset"], r.get("device", "cpu")) not in done] + results
    out.write_text(json.dumps(results, indent=1))
    report(results, out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
