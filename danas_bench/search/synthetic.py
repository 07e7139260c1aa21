"""A synthetic bench: made-up but structured accuracies over the real NAS-Bench-201 space.

:class:`SyntheticBench` satisfies :class:`danas_bench.search.protocol.BenchLike`, as the real
:class:`danas_bench.query.bench.Bench` does (same signatures, same seed rule), and has ``frame`` too, so
searchers, the runner and the leaderboard can be tested in milliseconds without the real tables. Nothing
in it is data: it is a deterministic function of the pair name.

How the numbers are made (all per *canonical* architecture, so isomorphic cells agree):

- a dataset-level score: one weight per (edge, op) plus small pairwise (edge, edge, op, op)
  interactions, the same for every teacher of a dataset; zero cells sit at chance accuracy;
- a teacher-level perturbation of that score (KD changes the ranking, not only the level), and a
  level shift (KD gains ~1-2 points on average, ``none`` does not);
- seed noise (``noise``: std of the per-seed offset; 0 gives exact, seed-independent values);
- learning curves that saturate with an architecture-dependent time constant;
- params / FLOPs / latency / training seconds from the number and kind of conv ops;
- off-table KD settings (``kd_temperature``, ``kd_alpha``) shift accuracy by a smooth bump whose
  optimum depends on the teacher (zero at the table's own T = 4, alpha = 0.9).

``seed_share`` (default 1): the share of architectures whose shipped rows (``frame()``) hold the seeds
after the first, a seeded sample the same for every teacher of a dataset; 0.1 mimics the v1 tables
(seed 0 everywhere, more seeds on 10%), 1 the tables that give every architecture several seeds.

``SyntheticBench(pair, ops=[...])`` restricts the space to the architectures whose edges all use the
given ops (a tiny bench for tests); ``archs=[...]`` restricts it to an explicit set.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from danas_bench.core import space
from danas_bench.core.pairs import Pair

TABLE_T, TABLE_ALPHA = 4.0, 0.9
DATASETS = ("synth-a", "synth-b", "synth-c")
TEACHERS = ("resnet", "mlp", "none")
VALID_METRICS = ("valid_acc", "valid_loss", "train_acc", "train_loss")
TEST_METRICS = ("test_acc", "test_loss")


def _rng(*names: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, names)).encode()))


def _budget_charge(budget, seconds: float, share: float = 1.0) -> None:
    """Charge one query of ``seconds`` simulated training to ``budget`` (the real bench's rule)."""
    budget.charge(float(seconds), queries=1, share=share)


class SyntheticBench:
    """A made-up pair over the NAS-Bench-201 space with the real bench's query surface."""

    source = "synthetic"

    def __init__(
        self,
        pair: str = "synth-a/resnet",
        *,
        ops: Sequence[str | int] | None = None,
        archs: Iterable[int] | None = None,
        seeds: Sequence[int] = (0, 1, 2),
        epochs: int = 10,
        noise: float = 0.004,
        num_classes: int = 10,
        seed_share: float = 1.0,
    ):
        parsed = Pair.parse(pair, check=False)
        dataset, teacher = parsed.dataset, parsed.teacher
        self.pair, self.dataset, self.teacher = pair, dataset, teacher
        self._options = {
            "ops": ops,
            "archs": None if archs is None else list(archs),
            "seeds": seeds,
            "epochs": epochs,
            "noise": noise,
            "num_classes": num_classes,
            "seed_share": seed_share,
        }
        self.seed_share = float(seed_share)
        self.seeds = tuple(int(s) for s in seeds)
        self.epochs = int(epochs)
        self.noise = float(noise)
        self.num_classes = int(num_classes)
        self.kd_temperature = TABLE_T
        self.kd_alpha = 0.0 if teacher == "none" else TABLE_ALPHA
        self.meta = {"pair": pair, "version": "synthetic-1", "recipe_id": "synthetic", "source": "synthetic"}
        canon = space.canonical_indices()
        if archs is not None:
            keep = np.unique(space.canonical_table()[np.asarray(list(archs), dtype=np.int64)])
        elif ops is not None:
            allowed = np.array([space.OP_INDEX[o] if isinstance(o, str) else int(o) for o in ops])
            ok = np.isin(space.ops_matrix(canon), allowed).all(axis=1)
            keep = canon[ok]
        else:
            keep = canon
        self.archs = np.asarray(keep, dtype=np.int64)
        self.archs.setflags(write=False)
        self.rng = np.random.default_rng(0)  # for seed=None reads without an rng, as the real bench's
        self._build()

    # --- the made-up tables -----------------------------------------------------------------------
    def _build(self) -> None:
        canon = space.canonical_indices()
        ops = space.ops_matrix(canon)  # (C, 6)
        n = len(canon)
        ds = _rng("dataset", self.dataset)
        w = ds.normal(0, 1, size=(space.N_EDGES, space.N_OPS))
        w[:, 0] -= 0.6  # `none` edges hurt
        w[:, 3] += 0.5  # 3x3 convs help
        inter = ds.normal(0, 0.25, size=(space.N_EDGES, space.N_EDGES, space.N_OPS, space.N_OPS))
        ceiling = 0.80 + 0.15 * ds.random()
        chance = 1.0 / self.num_classes
        te = _rng("teacher", self.dataset, self.teacher)
        if self.teacher == "none":
            dw = np.zeros_like(w)
            shift = 0.0
        else:
            dw = te.normal(0, 0.45, size=w.shape)
            dw[:, 2] += 0.3  # KD favours cheap 1x1 convs a little (the student can imitate with less)
            shift = 0.01 + 0.01 * te.random()
        self._kd_opt = (float(np.exp(te.uniform(np.log(1.5), np.log(8.0)))), float(te.uniform(0.5, 1.0)))
        e = np.arange(space.N_EDGES)
        score = (w + dw)[e[None, :], ops].sum(1)
        for a in range(space.N_EDGES):
            for b in range(a + 1, space.N_EDGES):
                score += inter[a, b, ops[:, a], ops[:, b]]
        score = (score - score.mean()) / score.std()
        acc = chance + (ceiling - chance) * (1 / (1 + np.exp(-(1.3 * score + 1.0)))) + shift
        zero = space.zero_cells(canon)
        acc = np.where(zero, chance, np.minimum(acc, 0.995))
        n_conv3 = (ops == 3).sum(1)
        n_conv1 = (ops == 2).sum(1)
        n_pool = (ops == 4).sum(1)
        s = len(self.seeds)
        noise = _rng("noise", self.pair).normal(0, 1, size=(n, s))
        split = _rng("split", self.pair).normal(0, 1, size=(2, n, s))
        valid = acc[:, None] + self.noise * (noise + 0.5 * split[0])
        test = acc[:, None] - 0.003 + self.noise * (noise + 0.5 * split[1])
        valid[zero], test[zero] = chance, chance
        self._valid = np.clip(valid, 0.0, 1.0)
        self._test = np.clip(test, 0.0, 1.0)
        tau = 1.0 + 0.5 * n_conv3 + 0.2 * n_conv1  # convs learn slower
        ep = np.arange(1, self.epochs + 1)
        frac = (1 - np.exp(-ep[None, :] / tau[:, None])) / (1 - np.exp(-self.epochs / tau[:, None]))
        self._frac = frac  # (C, E): share of the final gain reached at each epoch
        self._chance = chance
        c = 16
        self._params = 2000 + 9 * c * c * n_conv3 + c * c * n_conv1 + 3 * 1000
        self._flops = 64 * self._params + 100 * n_pool
        self._latency = 0.05 + 0.02 * n_conv3 + 0.008 * n_conv1 + 0.004 * n_pool + 0.002 * (ops == 1).sum(1)
        seconds = 0.8 * (1 + 0.35 * n_conv3 + 0.12 * n_conv1 + 0.05 * n_pool)
        self._seconds = seconds[:, None] * (1 + 0.05 * np.abs(_rng("time", self.pair).normal(size=(n, s))))
        # index -> row of the canonical arrays
        self._row = np.searchsorted(canon, space.canonical_table()).astype(np.int64)

    # --- helpers ----------------------------------------------------------------------------------
    def _index(self, arch) -> int:
        return space.to_index(arch)

    def _rows(self, archs) -> np.ndarray:
        if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu":
            idx = archs.astype(np.int64)
        else:
            idx = np.array([space.to_index(a) for a in archs], dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= space.N_ARCHS):
            raise ValueError("architecture index out of range")
        return self._row[idx]

    def _seed_col(self, seed, rng, n: int | None = None):
        """Column of ``seed`` ('mean': None; None: a recorded seed drawn with ``rng``, else the bench's own
        generator, one per architecture when ``n`` architectures are asked at once)."""
        if isinstance(seed, str):
            if seed != "mean":
                raise ValueError(f"seed must be an int, None or 'mean', got {seed!r}")
            return None
        if seed is None:
            draw = (rng or self.rng).integers(len(self.seeds), size=n)
            return draw if n is not None else int(draw)
        if int(seed) not in self.seeds:
            raise ValueError(f"seed {seed} is not recorded for {self.pair}; recorded seeds: {list(self.seeds)}")
        return self.seeds.index(int(seed))

    def _kd_delta(self, kd_temperature, kd_alpha) -> float:
        if self.teacher == "none" or (kd_temperature is None and kd_alpha is None):
            return 0.0
        t = TABLE_T if kd_temperature is None else float(kd_temperature)
        a = TABLE_ALPHA if kd_alpha is None else float(kd_alpha)
        if t <= 0 or not 0 <= a <= 1:
            raise ValueError(f"KD temperature must be > 0 and alpha in [0, 1], got T={t}, alpha={a}")
        t_opt, a_opt = self._kd_opt

        def bump(tt, aa):
            return -0.004 * (np.log(tt) - np.log(t_opt)) ** 2 - 0.02 * (aa - a_opt) ** 2

        return float(bump(t, a) - bump(TABLE_T, TABLE_ALPHA))

    def _values(self, rows: np.ndarray, metric: str, epoch, col, kd: float = 0.0) -> np.ndarray:
        split = metric.split("_")[0]
        base = self._test if split == "test" else self._valid
        final = (base[rows].mean(1) if col is None else base[rows, col]) + kd
        if split == "train":
            final = np.minimum(final + 0.05, 1.0)
        if epoch is not None:
            e = int(epoch)
            if not 1 <= e <= self.epochs:
                raise ValueError(f"epoch {epoch} out of range: {self.pair} records epochs 1..{self.epochs}")
            final = self._chance + (final - self._chance) * self._frac[rows, e - 1]
        if metric.endswith("_loss"):
            return -np.log(np.clip(final, 1e-3, 1.0)) * 1.5
        return final

    def _check_metric(self, metric: str, allowed: tuple[str, ...]) -> None:
        if metric not in allowed:
            hint = (
                " (test metrics are read with bench.test(), which the budget does not charge)"
                if metric.startswith("test")
                else ""
            )
            raise ValueError(f"unknown metric {metric!r}{hint}; valid choices: {', '.join(allowed)}")

    # --- the bench surface ------------------------------------------------------------------------
    def query(
        self,
        arch,
        metric: str = "valid_acc",
        *,
        epoch: int | None = None,
        seed=None,
        rng: np.random.Generator | None = None,
        budget=None,
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> float:
        self._check_metric(metric, VALID_METRICS)
        row = self._row[self._index(arch)]
        col = self._seed_col(seed, rng)
        kd = self._kd_delta(kd_temperature, kd_alpha)
        value = float(self._values(np.array([row]), metric, epoch, col, kd)[0])
        if budget is not None:
            secs = self._seconds[row].mean()  # the recorded time, mean over seeds (the real rule)
            share = 1.0 if epoch is None else int(epoch) / self.epochs
            _budget_charge(budget, secs * share, share)
        return value

    def query_many(
        self,
        archs,
        metric: str = "valid_acc",
        *,
        epoch: int | None = None,
        seed=None,
        rng: np.random.Generator | None = None,
        budget=None,
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        self._check_metric(metric, VALID_METRICS)
        rows = self._rows(archs)
        col = self._seed_col(seed, rng, len(rows))
        out = self._values(rows, metric, epoch, col, self._kd_delta(kd_temperature, kd_alpha))
        if budget is not None:
            secs = self._seconds[rows].mean(1)
            share = 1.0 if epoch is None else int(epoch) / self.epochs
            secs = secs * share
            if not budget.affordable(float(secs.sum()), len(secs), share):
                from danas_bench.core.budget import BudgetExhausted

                raise BudgetExhausted(f"budget exhausted: {len(secs)} queries do not fit in {budget!r}")
            budget.charge(float(secs.sum()), queries=len(secs), share=share)
        return out

    def test(
        self,
        arch,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> float:
        self._check_metric(metric, TEST_METRICS)
        row = self._row[self._index(arch)]
        kd = self._kd_delta(kd_temperature, kd_alpha)
        return float(self._values(np.array([row]), metric, None, self._seed_col(seed, None), kd)[0])

    def test_many(
        self,
        archs,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        self._check_metric(metric, TEST_METRICS)
        rows = self._rows(archs)
        return self._values(
            rows, metric, None, self._seed_col(seed, None, len(rows)), self._kd_delta(kd_temperature, kd_alpha)
        )

    def cost(self, arch, epoch: int | None = None) -> float:
        secs = float(self._seconds[self._row[self._index(arch)]].mean())
        return secs if epoch is None else secs * int(epoch) / self.epochs

    def best(self, metric: str = "test_acc", *, seed="mean") -> tuple[int, float]:
        if metric in TEST_METRICS:
            vals = self.test_many(self.archs, metric, seed=seed)
        else:
            vals = self.query_many(self.archs, metric, seed=seed)
        i = int(np.argmin(vals) if metric.endswith("_loss") else np.argmax(vals))
        return int(self.archs[i]), float(vals[i])

    def info(self, arch) -> dict:
        row = self._row[self._index(arch)]
        return {
            "params": int(self._params[row]),
            "flops": int(self._flops[row]),
            "latency_ms": float(self._latency[row]),
        }

    def info_many(self, archs, key: str = "params") -> np.ndarray:
        facts = {"params": self._params, "flops": self._flops, "latency_ms": self._latency}
        if key not in facts:
            raise ValueError(f"unknown architecture fact {key!r}; valid: {', '.join(facts)}")
        return np.asarray(facts[key][self._rows(archs)], dtype=np.float64)

    def default_pool(self):
        """The other synthetic pairs (made with the same options), opened lazily: what ``search.run``
        uses when it is given no pool."""
        from danas_bench.query.catalog import LazyPool

        pairs = [f"{d}/{t}" for d in dict.fromkeys((*DATASETS[:2], self.dataset)) for t in TEACHERS]
        return LazyPool(pairs, lambda p: SyntheticBench(p, **self._options), {self.pair: self})

    def descriptor(self) -> np.ndarray:
        """A made-up teacher / dataset description (the real bench's comes from the teacher's logits)."""
        r = _rng("descriptor", self.dataset, self.teacher)
        d = _rng("descriptor", self.dataset)
        none = self.teacher == "none"
        return np.array(
            [
                0.0 if none else 0.85 + 0.1 * r.random(),
                0.0 if none else r.random(),
                float(none),
                d.random(),
                np.log(self.num_classes),
            ],
            dtype=np.float32,
        )

    def frame(self) -> pl.DataFrame:
        """The made-up table rows (seeds after the first only on ``seed_share`` of the architectures)."""
        rows = self._row[self.archs]
        s = len(self.seeds)
        df = pl.DataFrame(
            {
                "arch_index": np.repeat(self.archs, s).astype(np.int32),
                "arch": [space.arch_str(int(a)) for a in self.archs for _ in range(s)],
                "seed": np.tile(np.array(self.seeds, dtype=np.int16), len(rows)),
                "teacher": [self.teacher] * (len(rows) * s),
                "kd_temperature": np.full(len(rows) * s, self.kd_temperature, dtype=np.float32),
                "kd_alpha": np.full(len(rows) * s, self.kd_alpha, dtype=np.float32),
                "epochs": np.full(len(rows) * s, self.epochs, dtype=np.int16),
                "valid_acc": self._valid[rows].reshape(-1).astype(np.float32),
                "test_acc": self._test[rows].reshape(-1).astype(np.float32),
                "train_seconds": self._seconds[rows].reshape(-1).astype(np.float32),
                "source": ["synthetic"] * (len(rows) * s),
            }
        )
        if self.seed_share >= 1.0:
            return df
        multi = _rng("multi-seed", self.dataset).random(space.N_ARCHS)[self.archs] < self.seed_share
        return (
            df.with_columns(pl.Series("_multi", np.repeat(multi, s)))
            .filter(pl.col("_multi") | (pl.col("seed") == self.seeds[0]))
            .drop("_multi")
        )

    def __repr__(self) -> str:
        return f"SyntheticBench({self.pair!r}, {len(self.archs)} archs, seeds={list(self.seeds)})"


def open(pair: str, **kw) -> SyntheticBench:  # noqa: A001 - mirrors danas_bench.open
    return SyntheticBench(pair, **kw)


def open_all(
    datasets: Sequence[str] = DATASETS[:2], teachers: Sequence[str] = TEACHERS, **kw
) -> dict[str, SyntheticBench]:
    """Every synthetic pair (dataset x teacher, ``none`` included), like ``danas_bench.open_all()``."""
    return {f"{d}/{t}": SyntheticBench(f"{d}/{t}", **kw) for d in datasets for t in teachers}
