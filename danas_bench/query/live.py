"""Training what a table lacks (the ``fallback="live"`` path of :class:`danas_bench.query.bench.Bench`):
with the table's own recipe, through the fused engine, into the pair's overlay."""

from __future__ import annotations

from danas_bench.core import schema as tb
from danas_bench.core.recipe import KD, Recipe
from danas_bench.query.overlay import Overlay

LIVE_CHUNK = 16  # architectures trained at once by the fused engine on a live miss


class LiveTrainer:
    """Trains architectures of one table (its pair, recipe and data) and appends the rows to its overlay."""

    def __init__(self, pair: str, dataset: str, recipe: Recipe, meta: dict, overlay: Overlay):
        self.pair, self.dataset, self.recipe, self.meta, self.overlay = pair, dataset, recipe, meta, overlay
        self._tasks: dict = {}  # KD key -> engine Task (data and teacher logits loaded once)

    def check_data(self) -> None:
        """Live rows must be trained on the table's data: its split hashes must match this machine's
        (a damaged or different data cache would otherwise give wrong rows, cached for good)."""
        from danas_bench.core.paths import cache_dir
        from danas_bench.training import data as data_mod

        want, have = self.meta.get("split_hashes"), data_mod.load(self.dataset).split_hashes
        if want is not None and want != have:
            bad = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            raise tb.TableError(
                f"{self.pair}: the {self.dataset} data here differs from the table's (split hashes "
                f"of {bad} differ), so live rows would not be comparable; delete the dataset cache "
                f"under {cache_dir()} and retry, or check the installed data package"
            )

    def train(self, todo: dict[int, list[int]], key: tuple, kd: KD, threads: int | None) -> None:
        """Train ``{seed: [canonical indices]}`` at KD setting ``kd`` (store key ``key``) on ``threads``
        torch threads (None: torch's own setting; restored after)."""
        import torch

        from danas_bench.training.engine import Task, train_many

        task = self._tasks.get(key)
        if task is None:
            self.check_data()
            task = self._tasks[key] = Task.make(self.recipe, kd)
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            for seed, cs in todo.items():
                for j in range(0, len(cs), LIVE_CHUNK):
                    recs = train_many(cs[j : j + LIVE_CHUNK], seed, task)
                    for r in recs:
                        r["source"] = "live"
                    self.overlay.append(recs, self.recipe.to_dict(), dict(kd.__dict__))
        finally:
            torch.set_num_threads(before)
