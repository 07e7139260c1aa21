"""How far a teacher family can rise above the shipped teacher, on the recipe grid below, without touching
the shipped files: each teacher trains into a temporary folder. Used for issue 18's teacher margins
(a margin under 2 pp is a shortfall of the family, not of its one shipped run, when no setting clears it).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/teacher_ceiling.py digits mlp
    OMP_NUM_THREADS=1 .venv/bin/python scripts/teacher_ceiling.py digits vit   # a family the dataset lacks:
                                                                                # registered for this process only
"""

import itertools
import statistics
import sys
import tempfile
from pathlib import Path

from danas_bench.core import pairs
from danas_bench.training import teachers as t


def main(dataset: str, family: str, epochs=(60, 150), lrs=(0.05, 0.02), seeds=(0, 1, 2, 3)) -> None:
    shipped_family = family in pairs.TEACHERS[dataset]
    if not shipped_family:  # a candidate family: trainable here, never written to the tables
        pairs.TEACHERS[dataset] = (*pairs.TEACHERS[dataset], family)
    tests = []
    for ep, lr, seed in itertools.product(epochs, lrs, seeds):
        with tempfile.TemporaryDirectory() as d:
            rec = t.TeacherRecipe(epochs=ep, lr=lr, seed=seed)  # batch size and weight decay: the shipped ones
            acc = t.train(dataset, family, rec, out=Path(d), log=lambda *a, **k: None)["accuracy"]
        tests.append(acc["test"])
        print(f"{dataset}/{family} epochs {ep} lr {lr} seed {seed}: valid {acc['valid']:.4f} test {acc['test']:.4f}")
    shipped = f"{t.info(dataset, family)['accuracy']['test']:.4f}" if shipped_family else "none (not a shipped family)"
    print(
        f"test accuracy over {len(tests)} runs: median {statistics.median(tests):.4f}, "
        f"range {min(tests):.4f}-{max(tests):.4f}; shipped {shipped}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
