"""A pool of single-threaded training processes, one per core.

Small students do not scale across threads; they scale across processes. Each worker sets
``torch.set_num_threads(1)`` and keeps its datasets and teacher logits cached between tasks.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor


def _init_worker():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _die_with_parent()
    import torch

    torch.set_num_threads(1)


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the process that started it dies, so a killed recipe search leaves
    no orphan training on for minutes (the pool starts its workers from the thread that submits, the
    main one, which lives as long as the process)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call: nobody is left to serve
            os.kill(os.getpid(), signal.SIGTERM)


def n_workers(requested: int | None = None) -> int:
    return max(1, requested or len(os.sched_getaffinity(0)))


def pool(workers: int | None = None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(n_workers(workers), mp_context=mp.get_context("spawn"), initializer=_init_worker)


def train_chunk(recipe_dict: dict, kd_dict: dict, seed: int, indices: list[int]) -> list[dict]:
    """Worker entry point: train ``indices`` of one seed with the engine; return their records."""
    from danas_bench.training.engine import train_many

    task = _task(tuple(sorted(recipe_dict.items())), tuple(sorted(kd_dict.items())))
    return train_many(indices, seed, task)


_TASKS: dict = {}


def _task(recipe_items, kd_items):
    from danas_bench.core.recipe import KD, Recipe
    from danas_bench.training.engine import Task

    key = (recipe_items, kd_items)
    if key not in _TASKS:
        _TASKS[key] = Task.make(Recipe(**dict(recipe_items)), KD(**dict(kd_items)))
    return _TASKS[key]
