"""How far a teacher family can rise above the shipped teacher, on the recipe grid below, without touching
the shipped files: each teacher trains into a temporary folder. Used for issue 18's teacher margins
(a margin under 2 pp is a shortfall of the family, not of its one shipped run, when no setting clears it).

The setting to ship is chosen on validation accuracy only (the best median valid over the seeds), and its
seed-0 run is the one to ship, so that the reported test accuracy is not the best of many test scores.
Each setting also reports the ensemble of its seeds (mean softmax), the ceiling of an ensemble teacher.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/teacher_ceiling.py digits mlp
    OMP_NUM_THREADS=1 .venv/bin/python scripts/teacher_ceiling.py digits vit   # a family the dataset lacks:
                                                                                # registered for this process only
    OMP_NUM_THREADS=1 .venv/bin/python scripts/teacher_ceiling.py mnist1d resnet --epochs 60 150 --lrs 0.05
"""

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

from safetensors.torch import load_file

from danas_bench.core import pairs
from danas_bench.training import data
from danas_bench.training import teachers as t


def main(dataset: str, family: str, epochs=(60, 150), lrs=(0.05, 0.02), seeds=(0, 1, 2, 3)) -> None:
    shipped_family = family in pairs.TEACHERS[dataset] + tuple(pairs.RETIRED.get(dataset, {}))
    if not shipped_family:  # a candidate family: trainable here, never written to the tables
        pairs.TEACHERS[dataset] = (*pairs.TEACHERS[dataset], family)
    ds = data.load(dataset)
    runs, probs = {}, {}  # (epochs, lr) -> [(seed, valid, test)], {split: summed softmax over the seeds}
    for ep, lr, seed in itertools.product(epochs, lrs, seeds):
        with tempfile.TemporaryDirectory() as d:
            rec = t.TeacherRecipe(epochs=ep, lr=lr, seed=seed)  # batch size and weight decay: the shipped ones
            acc = t.train(dataset, family, rec, out=Path(d), log=lambda *a, **k: None)["accuracy"]
            logits = load_file(str(Path(d) / f"{family}.logits.safetensors"))
        runs.setdefault((ep, lr), []).append((seed, acc["valid"], acc["test"]))
        summed = probs.setdefault((ep, lr), {})
        for split in ("valid", "test"):
            summed[split] = summed.get(split, 0) + logits[split].softmax(1)
        print(f"{dataset}/{family} epochs {ep} lr {lr} seed {seed}: valid {acc['valid']:.4f} test {acc['test']:.4f}")
    for (ep, lr), rs in runs.items():
        ens = {s: (p.argmax(1) == ds.y[s]).float().mean().item() for s, p in probs[(ep, lr)].items()}
        print(
            f"  epochs {ep} lr {lr}: median valid {statistics.median(r[1] for r in rs):.4f}, "
            f"median test {statistics.median(r[2] for r in rs):.4f}; ensemble of {len(rs)}: "
            f"valid {ens['valid']:.4f} test {ens['test']:.4f}"
        )
    tests = [r[2] for rs in runs.values() for r in rs]
    chosen = max(runs, key=lambda k: statistics.median(r[1] for r in runs[k]))
    seed0 = next(r for r in runs[chosen] if r[0] == min(seeds))
    shipped = f"{t.info(dataset, family)['accuracy']['test']:.4f}" if shipped_family else "none (not a shipped family)"
    print(
        f"test accuracy over {len(tests)} runs: median {statistics.median(tests):.4f}, "
        f"range {min(tests):.4f}-{max(tests):.4f}; shipped {shipped}\n"
        f"chosen by median valid: epochs {chosen[0]} lr {chosen[1]}; its seed-{seed0[0]} run: "
        f"valid {seed0[1]:.4f} test {seed0[2]:.4f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("family")
    ap.add_argument("--epochs", type=int, nargs="+", default=[60, 150])
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.05, 0.02])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    a = ap.parse_args()
    main(a.dataset, a.family, tuple(a.epochs), tuple(a.lrs), tuple(a.seeds))
