"""Held-out scoring: a run searches one *visible* seed and is scored on the others.

Why: one seed's validation and test accuracy come from one trained network, so a searcher that
maximises validation accuracy finds lucky training runs, and scoring it on the same run's test
accuracy rewards the luck. Here a run sees only its visible seed (validation metrics, through
:class:`SearchView`), and its final architecture is scored by a :class:`Target` that never reads that
seed:

- ``heldout_seeds`` (:class:`HeldOutSeeds`): the mean test accuracy over the architecture's *other*
  recorded seeds. It needs two seeds per architecture, so it searches the sub-space of architectures
  that have them (the whole table once every architecture has two or more; nothing here changes then);
- ``expected`` (:class:`Expected`): the expected-accuracy view (``seed="expected"``, a cross-fitted
  estimate of each architecture's seed mean), over the whole table; unavailable (with a note) when
  the pair has no file of estimates.

Everything is read from the *shipped* table rows (:func:`shipped_rows`), never from the user's live
overlay, so training a seed live does not move a score. The simulated cost of a query is
:func:`arch_costs`: one deterministic number per architecture, identical for every run and searcher.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from danas_bench.core import space
from danas_bench.core.budget import Budget
from danas_bench.query.catalog import LazyPool

SCORINGS = ("heldout_seeds", "expected")
VISIBLE_STREAM = 0x5EED  # the visible seed's RNG stream: shared by every searcher (matched runs)


class Unavailable(RuntimeError):
    """A scoring target the pair cannot provide (for example no expected-accuracy file)."""


def shipped_rows(bench, columns: list[str]) -> pl.DataFrame:
    """The pair's shipped table rows (``columns``), never the live overlay.

    A real bench is read from its Parquet file; a synthetic bench has no overlay, so its ``frame()``.
    """
    path = getattr(bench, "path", None)
    if path is not None and getattr(bench, "source", None) != "synthetic" and Path(path).exists():
        import pyarrow.parquet as pq

        from danas_bench.core import schema as tables

        have = set(pq.read_schema(Path(path)).names)
        return pl.from_arrow(tables.read(Path(path), columns=[c for c in columns if c in have]))
    frame = bench.frame()
    return frame.select([c for c in columns if c in frame.columns])


# --- the searched space ------------------------------------------------------------------------------


class Space:
    """The architectures a run may search and the seeds that cover all of them (read from shipped rows).

    ``min_seeds``: an architecture is on offer when it has at least that many recorded seeds
    (2 for held-out scoring). ``visible_seeds``: the seeds recorded for *every* architecture on offer,
    the ones a run's visible seed is drawn from.
    """

    def __init__(self, bench, min_seeds: int = 1):
        rows = shipped_rows(bench, ["arch_index", "seed", "valid_acc", "valid_acc_curve", "test_acc"])
        canon = space.canonical_table()
        rows = rows.with_columns(pl.Series("arch_index", canon[rows["arch_index"].to_numpy().astype(np.int64)]))
        self.pair = bench.pair
        self.min_seeds = int(min_seeds)
        counts = rows.group_by("arch_index").agg(pl.col("seed").n_unique().alias("n"))
        self.table_archs = int(counts.height)
        keep = np.sort(counts.filter(pl.col("n") >= self.min_seeds)["arch_index"].to_numpy().astype(np.int64))
        self.archs = keep
        self.archs.setflags(write=False)
        rows = rows.filter(pl.col("arch_index").is_in(keep))
        self._rows = rows
        self._costs: np.ndarray | None = None
        seeds = sorted(int(s) for s in rows["seed"].unique())
        self.seeds = seeds
        self.visible_seeds = [
            s for s in seeds if rows.filter(pl.col("seed") == s)["arch_index"].n_unique() == len(keep)
        ]
        if len(keep) and not self.visible_seeds:
            raise Unavailable(
                f"{self.pair}: no seed is recorded for all {len(keep)} architectures with "
                f">= {self.min_seeds} seeds, so no visible seed can be drawn"
            )

    def costs(self, bench) -> np.ndarray:
        """:func:`arch_costs` of the architectures on offer (computed once)."""
        if self._costs is None:
            self._costs = arch_costs(bench, self.archs)
        return self._costs

    @property
    def whole(self) -> bool:
        return len(self.archs) == self.table_archs

    def describe(self) -> str:
        if self.whole:
            return f"the whole table ({len(self.archs)} architectures)"
        return (
            f"the {len(self.archs)} of {self.table_archs} architectures with >= {self.min_seeds} recorded "
            f"seeds (the others have fewer; the whole table is searched once every architecture has them)"
        )

    def column(self, name: str, seed: int) -> np.ndarray:
        """``name`` of every architecture on offer at ``seed`` (nan where not recorded)."""
        r = self._rows.filter(pl.col("seed") == seed)
        out = np.full(len(self.archs), np.nan)
        if name not in r.columns:
            raise KeyError(f"{self.pair}: the shipped rows hold no {name!r}")
        pos = np.searchsorted(self.archs, r["arch_index"].to_numpy())
        out[pos] = r[name].cast(pl.Float64).to_numpy()
        return out

    def curve(self, seed: int, epoch: int) -> np.ndarray | None:
        """Validation accuracy at ``epoch`` (1-based) of every architecture at ``seed``; None without curves."""
        if "valid_acc_curve" not in self._rows.columns:
            return None
        r = self._rows.filter(pl.col("seed") == seed)
        out = np.full(len(self.archs), np.nan)
        pos = np.searchsorted(self.archs, r["arch_index"].to_numpy())
        out[pos] = r["valid_acc_curve"].list.get(epoch - 1, null_on_oob=True).cast(pl.Float64).to_numpy()
        return out


def visible_seed(space_: Space, run: int) -> int:
    """The visible seed of run ``run``: the same for every searcher and pair (matched runs)."""
    seeds = space_.visible_seeds
    return int(seeds[np.random.default_rng([int(run), VISIBLE_STREAM]).integers(len(seeds))])


# --- scoring targets -----------------------------------------------------------------------------------


class Target:
    """A score per architecture of a :class:`Space` that does not read the visible seed."""

    name = "target"
    min_seeds = 1
    metric = "test_acc"  # what the score is of (a view's test reads must ask for it)
    note = ""

    def __init__(self, bench, space_: Space | None = None):
        self.pair = bench.pair
        self.space = space_ or Space(bench, self.min_seeds)

    @property
    def archs(self) -> np.ndarray:
        return self.space.archs

    def score(self, visible: int) -> np.ndarray:
        raise NotImplementedError


class HeldOutSeeds(Target):
    """Mean test accuracy over the recorded seeds other than the visible one.

    The visible seed's column is never read: :meth:`score` builds the mean from the other seeds' columns.
    """

    name = "heldout_seeds"
    min_seeds = 2

    def __init__(self, bench, space_: Space | None = None, metric: str = "test_acc"):
        super().__init__(bench, space_)
        self.metric = metric
        self.note = f"mean {metric} over the seeds other than the visible one; space: {self.space.describe()}"
        self._cache: dict[int, np.ndarray] = {}

    def score(self, visible: int) -> np.ndarray:
        if visible not in self._cache:
            others = [s for s in self.space.seeds if s != int(visible)]
            if not others:
                raise Unavailable(f"{self.pair}: no seed besides the visible seed {visible} is recorded")
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    m = np.nanmean(np.stack([self.space.column(self.metric, s) for s in others]), axis=0)
            if np.isnan(m).any():
                raise Unavailable(
                    f"{self.pair}: {int(np.isnan(m).sum())} architectures have no seed besides "
                    f"the visible seed {visible}"
                )
            self._cache[int(visible)] = m
        return self._cache[int(visible)]


class Expected(Target):
    """The expected-accuracy view (``seed="expected"``): a cross-fitted estimate of each architecture's
    seed mean, over the whole table. :class:`Unavailable` when the pair has no file of estimates."""

    name = "expected"
    min_seeds = 1

    def __init__(self, bench, space_: Space | None = None, metric: str = "test_acc"):
        super().__init__(bench, space_)
        self.metric = metric
        try:
            vals = np.asarray(bench.test_many(self.space.archs, metric, seed="expected"), dtype=float)
        except (ValueError, KeyError, LookupError, FileNotFoundError, TypeError, NotImplementedError) as e:
            raise Unavailable(
                f"{self.pair}: no expected-accuracy view ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else 'not provided'})"
            ) from None
        if vals.shape != (len(self.space.archs),) or not np.isfinite(vals).all():
            raise Unavailable(f"{self.pair}: the expected-accuracy view does not cover every architecture")
        self._vals = vals
        self.note = (
            f"the expected-accuracy view's estimate of {metric} (cross-fitted seed mean); "
            f"space: {self.space.describe()}"
        )

    def score(self, visible: int) -> np.ndarray:
        return self._vals


TARGETS = {"heldout_seeds": HeldOutSeeds, "expected": Expected}


def make_target(name: str, bench) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown scoring {name!r}; choices: {', '.join(TARGETS)}")
    return TARGETS[name](bench)


# --- simulated cost --------------------------------------------------------------------------------------


def arch_costs(bench, archs: np.ndarray) -> np.ndarray:
    """Simulated seconds of one full-fidelity query of each of ``archs``: deterministic per architecture.

    The recorded seconds of a row vary up to 9x between shards (engine version, machine, load), so they
    are not a fair price. Instead: ``a + b * flops(arch)``, with ``a, b`` a least-squares fit of the
    pair's shipped seed-mean seconds on the FLOPs of the architecture file (measured once per dataset),
    ``a, b >= 0``. The same architecture costs the same in every run of every searcher.
    """
    archs = np.asarray(archs, dtype=np.int64)
    flops = np.asarray(bench.info_many(archs, "flops"), dtype=float)
    rows = shipped_rows(bench, ["arch_index", "train_seconds"])
    if "train_seconds" not in rows.columns or rows.height == 0:
        return np.ones(len(archs))
    canon = space.canonical_table()
    sec = (
        rows.with_columns(pl.Series("arch_index", canon[rows["arch_index"].to_numpy().astype(np.int64)]))
        .group_by("arch_index")
        .agg(pl.col("train_seconds").cast(pl.Float64).mean())
        .sort("arch_index")
    )
    a_all = sec["arch_index"].to_numpy()
    x = np.asarray(bench.info_many(a_all, "flops"), dtype=float)
    y = sec["train_seconds"].to_numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        b, a = np.polyfit(x[ok], y[ok], 1)
    else:
        a, b = float(np.nanmean(y)), 0.0
    if b < 0:
        a, b = float(np.nanmean(y[ok])), 0.0
    a = max(float(a), 0.05 * float(np.nanmedian(y[ok]))) if ok.any() else 1.0
    return a + b * np.nan_to_num(flops, nan=float(np.nanmedian(x[ok])) if ok.any() else 0.0)


# --- what a run searches ---------------------------------------------------------------------------------


class SearchView:
    """One pair as one run sees it: the visible seed over the searched space, scored by a target.

    A :class:`danas_bench.search.protocol.BenchLike` (the real bench's signatures): the bench the
    leaderboard hands :func:`danas_bench.search.run` and :class:`danas_bench.search.Problem`.
    ``query`` / ``query_many`` answer the *visible* seed whatever seed is asked (a searcher cannot read
    another seed) and charge the deterministic cost; ``test`` / ``test_many`` / ``best`` answer the
    target (never the visible seed). Refused, with an error that says why: architectures outside the
    space (``KeyError``), off-table KD settings (they would be trained live, outside the shipped rows),
    metrics other than ``valid_acc`` for reads and the target's metric for test reads, test reads at a
    seed other than ``"mean"`` (``ValueError``), and test reads on a view without a target
    (``PermissionError``).
    """

    source = "view"

    def __init__(
        self, bench, space_: Space, visible: int, target: Target | None = None, costs: np.ndarray | None = None
    ):
        if visible not in space_.visible_seeds:
            raise ValueError(
                f"{bench.pair}: seed {visible} does not cover the searched space; seeds that do: {space_.visible_seeds}"
            )
        self._bench, self._space, self._target = bench, space_, target
        self.pair, self.dataset, self.teacher = bench.pair, bench.dataset, bench.teacher
        self.archs = space_.archs
        self.visible = int(visible)
        self.seeds = (self.visible,)
        self.epochs = int(bench.epochs)
        self._valid = space_.column("valid_acc", self.visible)
        self._curves: dict[int, np.ndarray | None] = {}
        if costs is None:
            costs = space_.costs(bench)
        self._costs = np.asarray(costs, dtype=float)
        self._score = None if target is None else target.score(self.visible)
        self._canon = space.canonical_table()

    @property
    def scoring(self) -> str | None:
        return None if self._target is None else self._target.name

    def _pos(self, archs) -> np.ndarray:
        idx = self._canon[
            np.array(
                [space.to_index(a) for a in np.atleast_1d(archs)]
                if not (isinstance(archs, np.ndarray) and archs.dtype.kind in "iu")
                else archs.astype(np.int64)
            )
        ]
        pos = np.clip(np.searchsorted(self.archs, idx), 0, max(len(self.archs) - 1, 0))
        bad = self.archs[pos] != idx
        if bad.any():
            raise KeyError(
                f"{self.pair}: architecture {int(idx[bad][0])} is outside the searched space ({self._space.describe()})"
            )
        return pos

    def _check_kd(self, kd_temperature, kd_alpha) -> None:
        if kd_temperature is not None or kd_alpha is not None:
            raise ValueError(
                f"{self.pair}: off-table KD settings are trained live; the leaderboard scores shipped rows only"
            )

    def _values(self, pos: np.ndarray, metric: str, epoch) -> np.ndarray:
        if metric != "valid_acc":
            raise ValueError(f"{self.pair}: the leaderboard's searchers see valid_acc only, not {metric!r}")
        if epoch is None or int(epoch) >= self.epochs:
            return self._valid[pos]
        e = int(epoch)
        if e not in self._curves:
            self._curves[e] = self._space.curve(self.visible, e)
        cur = self._curves[e]
        if cur is None:  # no curves in the rows (synthetic bench): its own epoch answer at the visible seed
            return np.array([self._bench.query(int(self.archs[p]), metric, epoch=e, seed=self.visible) for p in pos])
        return cur[pos]

    def query(
        self,
        arch,
        metric: str = "valid_acc",
        *,
        epoch: int | None = None,
        seed=None,
        rng: np.random.Generator | None = None,
        budget: Budget | None = None,
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> float:
        """``metric`` (valid_acc only) of ``arch`` at the visible seed, whatever ``seed`` and ``rng`` say."""
        self._check_kd(kd_temperature, kd_alpha)
        pos = self._pos(arch)
        if budget is not None:
            share = 1.0 if epoch is None else min(int(epoch) / self.epochs, 1.0)
            budget.charge(self.cost(int(self.archs[pos[0]]), epoch), queries=1, share=share)
        return float(self._values(pos, metric, epoch)[0])

    def query_many(
        self,
        archs,
        metric: str = "valid_acc",
        *,
        epoch: int | None = None,
        seed=None,
        rng: np.random.Generator | None = None,
        budget: Budget | None = None,
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        """``query`` for many architectures; the budget is charged the sum."""
        self._check_kd(kd_temperature, kd_alpha)
        pos = self._pos(np.asarray(archs))
        if budget is not None:
            scale = 1.0 if epoch is None else int(epoch) / self.epochs
            budget.charge(float(self._costs[pos].sum()) * scale, queries=len(pos), share=min(scale, 1.0))
        return self._values(pos, metric, epoch)

    def cost(self, arch, epoch: int | None = None) -> float:
        c = float(self._costs[self._pos(arch)[0]])
        return c if epoch is None else c * int(epoch) / self.epochs

    def _need_target(self) -> np.ndarray:
        if self._score is None:
            raise PermissionError(f"{self.pair}: this view has no scoring target")
        return self._score

    def _scores(self, metric: str, seed, kd_temperature=None, kd_alpha=None) -> np.ndarray:
        """The target's scores, after checking that a test read asks for what the target answers."""
        s = self._need_target()
        if not (isinstance(seed, str) and seed == "mean"):
            raise ValueError(
                f"{self.pair}: a view's test reads answer its {self.scoring} target, which never "
                f"reads the visible seed; seed={seed!r} is refused (leave the default 'mean')"
            )
        if metric != self._target.metric:
            raise ValueError(f"{self.pair}: the {self.scoring} target scores {self._target.metric!r}, not {metric!r}")
        self._check_kd(kd_temperature, kd_alpha)
        return s

    def test(
        self,
        arch,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> float:
        """The target's score of ``arch`` (uncharged)."""
        return float(self._scores(metric, seed, kd_temperature, kd_alpha)[self._pos(arch)[0]])

    def test_many(
        self,
        archs,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        """The target's scores of ``archs`` (uncharged)."""
        return self._scores(metric, seed, kd_temperature, kd_alpha)[self._pos(np.asarray(archs))]

    def best(self, metric: str = "test_acc", *, seed="mean") -> tuple[int, float]:
        """(architecture, score) of the target's best architecture in the searched space."""
        s = self._scores(metric, seed)
        i = int(np.argmax(s))
        return int(self.archs[i]), float(s[i])

    def info(self, arch) -> dict:
        return dict(self._bench.info(arch))

    def info_many(self, archs, key: str = "params") -> np.ndarray:
        return np.asarray(self._bench.info_many(np.asarray(archs, dtype=np.int64), key), dtype=float)

    def descriptor(self) -> np.ndarray:
        return np.asarray(self._bench.descriptor(), dtype=np.float32)

    def default_pool(self) -> LazyPool:
        """The pairs beside this one as this run sees them: the underlying bench's ``default_pool()``,
        every other pair an unscored view over its own space of the same kind (as many seeds per
        architecture) at this view's visible seed, or at the first seed that covers that space where
        this one does not (what the leaderboard hands each run as its pool)."""
        base = self._bench.default_pool()
        min_seeds = self._space.min_seeds

        def view(pair: str) -> SearchView:
            bench = base[pair]
            sp = Space(bench, min_seeds)
            return SearchView(bench, sp, self.visible if self.visible in sp.visible_seeds else sp.visible_seeds[0])

        return LazyPool(list(base), view, {self.pair: self})

    def __repr__(self) -> str:
        return (
            f"SearchView({self.pair!r}, visible seed {self.visible}, {len(self.archs)} archs, scoring {self.scoring})"
        )


def noise_ceiling(view: SearchView) -> float:
    """Regret (fraction) of the best architecture by the visible seed's validation accuracy, scored on the
    target: what a perfect searcher of the visible signal reaches."""
    s = view._need_target()
    return float(s.max() - s[int(np.nanargmax(view._valid))])


__all__ = [
    "SCORINGS",
    "Space",
    "Target",
    "HeldOutSeeds",
    "Expected",
    "SearchView",
    "Unavailable",
    "shipped_rows",
    "visible_seed",
    "arch_costs",
    "noise_ceiling",
    "make_target",
]
