"""The cost of per-student gradient clipping next to one fused training step (docs/performance.md).

One core, process CPU time, medians of 5 steps after a warm-up: the forward + backward of a batch of 32 on
64 fused students, and ``ClipPerStudent`` on the gradients it leaves.
"""

import time

import numpy as np
import torch
from torch.nn import functional as F

from danas_bench.core import space
from danas_bench.core.recipe import KD, Recipe
from danas_bench.training import engine
from danas_bench.training.fused import FusedStudents, parameter_owners


def main() -> None:
    torch.set_num_threads(1)
    archs = [int(a) for a in np.sort(np.random.default_rng(0).choice(space.canonical_indices(), 64, replace=False))]
    for ds, width in (("fashion-mnist", 4), ("mnist1d", 8)):
        task = engine.Task.make(Recipe(ds, width=width, batch_size=32), KD("none"))
        students = engine._students(archs, 0, task)
        fused = FusedStudents(students)
        t0 = time.process_time()
        owners = parameter_owners(students)
        t_own = time.process_time() - t0
        clip = engine.ClipPerStudent(list(fused.parameters()), owners, len(archs), 1.0)
        x, y = task.dataset.x["train"][:32], task.dataset.y["train"][:32]
        step, cl = [], []
        for i in range(6):
            t0 = time.process_time()
            fused.zero_grad()
            F.cross_entropy(fused(x).flatten(0, 1), y.repeat_interleave(len(archs))).backward()
            t1 = time.process_time()
            clip()
            t2 = time.process_time()
            if i:
                step.append(t1 - t0)
                cl.append(t2 - t1)
        s, c = np.median(step), np.median(cl)
        print(
            f"{ds} width {width}: 64 students, forward + backward of 32 {1000 * s:.1f} ms, "
            f"clipping {1000 * c:.2f} ms ({c / s:.1%}); owner map once {t_own:.2f} s"
        )


if __name__ == "__main__":
    main()
