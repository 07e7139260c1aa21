"""The query API: open a pair's table and ask it anything in microseconds.

::

    import danas_bench as db
    bench = db.open("digits/resnet")
    bench.query("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    bench.query(1234, "valid_acc", epoch=3, seed="mean", budget=budget)
    bench.test(1234)                # the test accuracy (seed mean), never charged: for scoring only

A table is read once into the column store of :mod:`danas_bench.query.store` (one store per KD
setting), so a scalar query is a few dict and stdlib-array look-ups and ``query_many`` is numpy fancy
indexing. Searchers see validation and training metrics only (``query``, ``query_many``, ``curve``); test
metrics come from ``test`` / ``test_many``, which are never charged. What the table does not hold (an
architecture, a seed, a KD temperature or weight) is trained live with the table's recipe
(``fallback="live"``), cached in the overlay (:mod:`danas_bench.query.overlay`) and read from there
later; ``fallback="error"`` raises :class:`MissingRecord` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from danas_bench.core.budget import Budget, BudgetExhausted  # noqa: F401  (re-exported)
from danas_bench.core.pairs import Pair
from danas_bench.core.paths import tables_dir
from danas_bench.core.recipe import KD, check_kd
from danas_bench.query import estimates, facts
from danas_bench.query.catalog import LazyPool, check_planned_seeds, default_pairs, discover, read_table_meta, table_for
from danas_bench.query.live import LiveTrainer
from danas_bench.query.metrics import LOWER_IS_BETTER, MissingRecord, check_seed, colkey, missing_message
from danas_bench.query.overlay import Overlay
from danas_bench.query.store import (
    CURVES,
    N,
    Store,
    Stores,
    TableFile,
    arch_index,
    arch_indices,
    canon,
    kd_key,
    seed_mean,
)
from danas_bench.tables.manifest import check_listed

FALLBACKS = ("live", "error")
_KD_TYPES = (int, float, type(None))


class Bench:
    """One pair's table (plus the live overlay). Create it with :func:`open`.

    Its query surface is :class:`danas_bench.search.protocol.BenchLike`: ``query``, ``query_many``,
    ``test`` and ``test_many`` take the architecture(s) and the metric positionally and everything else
    by keyword, in one order: ``epoch, seed, rng, budget, kd_temperature, kd_alpha`` (``test`` /
    ``test_many`` take the ``seed`` and KD ones).

    The seed rule: ``seed=None`` samples one of the seeds recorded for each architecture with ``rng``
    (default: the bench's own generator, :attr:`rng`, seeded 0); "mean" averages the recorded seeds;
    "expected" reads the cross-fitted estimate of the seed mean (``danas-bench expected``); an int reads
    that seed and is never filled from another. Searchers' reads (``query``, ``query_many``) default to
    None, one training run as a searcher would see it; scoring reads (``test``, ``test_many``, ``best``)
    default to "mean". Seed means and sampled seeds read the shipped rows only (seeds a user trained live
    change no score) unless the bench is opened with ``include_overlay=True``.
    """

    def __init__(
        self,
        pair: str,
        path: Path,
        root: Path,
        fallback: str = "live",
        overlay_dir: Path | str | None = None,
        rng: np.random.Generator | int | None = None,
        allow_unlisted: bool = False,
        include_overlay: bool = False,
    ):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.path, self.root, self.fallback = Path(path), Path(root), fallback
        self.allow_unlisted = bool(allow_unlisted)
        check_listed(self.path, self.root, self.allow_unlisted)  # a damaged table is an error
        self.meta, self.recipe = read_table_meta(self.path, pair)
        self.pair, self.recipe_id = pair, self.meta["recipe_id"]
        parsed = Pair.parse(pair)
        self.dataset, self.teacher = parsed.dataset, parsed.teacher
        self.kd = KD(**self.meta["kd"])
        self.epochs = int(self.recipe.epochs)
        self._where = f"{pair} recipe {self.recipe_id}"  # the table, in messages (formatted once)
        self._rng = rng  # made on first use (numpy.random's import is a tenth of a cold open)
        self._file = TableFile(self.path)
        self._kd_main = kd_key(self.kd.temperature, self.kd.alpha)
        self._st = Stores(self._file, self.epochs, self._kd_main)
        # opt-in: let seed="mean" and seed=None (query, test, curve, ...) read live overlay rows too
        self.include_overlay = bool(include_overlay)
        self.archs = self._st.archs
        self.seeds = list(self._st.table.seeds)
        check_planned_seeds(self.path, self.meta, self.seeds, self.root, pair, self.recipe_id)
        self.overlay = Overlay(pair, self.recipe_id, overlay_dir)
        self._trainer = LiveTrainer(pair, self.dataset, self.recipe, self.meta, self.overlay)
        self._kd_of: dict = {}  # (kd_temperature, kd_alpha) as asked -> store key
        self._kd_asked: dict = {}  # store key -> KD
        self._facts = facts.ArchFacts(self.pair, self.recipe, self.root, self.allow_unlisted, fallback)
        self._exp = estimates.ExpectedView(self.path, pair, self.root, self.allow_unlisted)
        # torch threads while training live (restored after): tiny students train fastest on one
        # thread, as the generation workers do (10x faster than 2 contended threads on a busy box);
        # None keeps torch's own setting
        self.live_threads: int | None = 1
        self._sync_overlay()

    @property
    def rng(self) -> np.random.Generator:
        """The bench's own generator for ``seed=None`` queries without an ``rng`` (seeded: 0 by default)."""
        if not isinstance(self._rng, np.random.Generator):
            self._rng = np.random.default_rng(self._rng or 0)
        return self._rng

    @rng.setter
    def rng(self, value) -> None:
        self._rng = value

    # --- stores -------------------------------------------------------------------------------

    def _sync_overlay(self) -> bool:
        """Read overlay files written since the last look (by any process); rebuild stores if any."""
        new = self.overlay.read_new()
        if new is None:
            return False
        self._st.add_overlay(new)
        return True

    def _pick(self, seed, kd_temperature=None, kd_alpha=None) -> Store:
        """The store that answers this KD setting and seed (:meth:`Stores.pick`)."""
        return self._st.pick(seed, self._kd_key_of(kd_temperature, kd_alpha), self.include_overlay)

    def _kd_key_of(self, kd_temperature, kd_alpha) -> tuple:
        """The store key of a KD setting as asked (None, None: the table's own)."""
        if kd_temperature is None and kd_alpha is None:
            return self._kd_main
        ask = (kd_temperature, kd_alpha)
        # only plain numbers are cached (True == 1 as a key); anything else is validated every time
        key = self._kd_of.get(ask) if type(kd_temperature) in _KD_TYPES and type(kd_alpha) in _KD_TYPES else None
        if key is None:
            kd = self._kd(kd_temperature, kd_alpha)
            key = self._kd_of[ask] = kd_key(kd.temperature, kd.alpha)
            self._kd_asked.setdefault(key, kd)  # live runs train the setting as asked
        return key

    def _kd(self, kd_temperature=None, kd_alpha=None) -> KD:
        t = self.kd.temperature if kd_temperature is None else check_kd("temperature", kd_temperature)
        a = self.kd.alpha if kd_alpha is None else check_kd("alpha", kd_alpha)
        if self.teacher == "none":
            if kd_alpha not in (None, 0, 0.0):
                raise ValueError(
                    f"{self.pair} trains without a teacher (alpha = 0); kd_alpha={kd_alpha} needs a pair with a teacher"
                )
            return self.kd
        return KD(self.teacher, t, a)

    # --- validation -----------------------------------------------------------------------------

    def _colkey(self, metric, epoch, test: bool):
        return colkey(metric, epoch, test, self.epochs, self._where)

    def _check_seed(self, seed) -> None:
        check_seed(seed, self.pair, self.seeds)

    def _expected(self, metric, epoch, test: bool, kd_temperature=None, kd_alpha=None) -> tuple:
        return self._exp.arrays(metric, epoch, test, self._kd_key_of(kd_temperature, kd_alpha) == self._kd_main)

    def _expected_cost(self, idx):
        return estimates.expected_cost(self._st.table.cost, idx)

    # --- the query path -------------------------------------------------------------------------

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
        """A validation / training metric of one architecture (string, index or op list); ``seed``: see
        the class docstring. ``epoch``: None is the final value, 1..epochs reads the curve. ``budget`` is
        charged one query and the recorded training seconds (scaled to the epoch) before the answer;
        :class:`BudgetExhausted` is raised when that does not fit."""
        # the two hot spots of a scalar read inlined (each call costs a tenth of the read): arch_index's
        # in-range int, and Stores.pick at the table's own KD setting (its own setting's store is `main`)
        i = arch if type(arch) is int and 0 <= arch < N else arch_index(arch)
        if kd_temperature is None and kd_alpha is None:
            st = self._st.iso if (seed is None or type(seed) is str) and not self.include_overlay else self._st.main
        else:
            st = self._pick(seed, kd_temperature, kd_alpha)
        if type(metric) is not str or not (epoch is None or type(epoch) is int):
            self._colkey(metric, epoch, False)  # ValueError before the caches: 3.0 == 3 as a key
        req = metric if epoch is None else (metric, epoch)
        if type(seed) is str and seed == "expected":
            v = self._expected(metric, epoch, False, kd_temperature, kd_alpha)[1][i]
            if budget is not None:
                budget.charge(float(self._expected_cost(i)))
            return v
        if type(seed) is str and seed == "mean":
            lst = st.means.get(req)
            if lst is None:
                lst = st.mean_list(req, self._colkey(metric, epoch, False))
            r = i if st.n_have_l[i] else -1  # (the means are a list over indices)
        else:
            lst = st.q.get(req)
            if lst is None:
                lst = st.qlist(req, self._colkey(metric, epoch, False))
            if seed is not None:
                p = st.seed_pos.get(seed) if type(seed) is int else None
                r = st.rows_l[p][i] if p is not None else -1
            elif st.ns == 1:
                r = st.rows_l[0][i]
            else:  # sample a recorded seed; no draw where only one is recorded
                nh = st.n_have_l[i]
                if nh <= 1:
                    r = st.rows_l[st.one_pos_l[i]][i] if nh else -1
                elif nh == st.ns:
                    r = st.rows_l[int((rng or self.rng).random() * nh)][i]
                else:
                    r = st.rows_l[st.positions(i)[int((rng or self.rng).random() * nh)]][i]
        if r < 0:
            return self._miss(
                i,
                st,
                seed,
                budget,
                lambda s: self.query(
                    arch,
                    metric,
                    epoch=epoch,
                    seed=s,
                    rng=rng,
                    budget=budget,
                    kd_temperature=kd_temperature,
                    kd_alpha=kd_alpha,
                ),
            )
        if budget is not None:
            if epoch is None:
                budget.charge(st.cost_l[i])
            else:
                budget.charge(st.cost_l[i] * epoch / self.epochs, share=epoch / self.epochs)
        return lst[r]

    def _miss(self, i: int, st: Store, seed, budget, again):
        """No row answers: map indices to canonical rows, or train live (or raise); then ``again(seed)``."""
        self._check_seed(seed)
        if isinstance(seed, np.integer):
            return again(int(seed))
        if not st.mapped:
            self._st.map_canonical()
            st.map_canonical()
            return again(seed)
        c = int(canon()[i])
        train_seed = seed if isinstance(seed, int) else self.seeds[0]
        key = self._st.key_of(st)
        if self.fallback == "error":
            raise MissingRecord(missing_message(self, i, c, st, seed, key))
        if budget is not None and not budget.affordable(0.0):
            budget.charge(0.0)  # raises BudgetExhausted before any training
        self._live({train_seed: [c]}, key)
        if not self._st.has(key, c, train_seed):
            raise RuntimeError(
                f"{self.pair}: live training of architecture {c} seed {train_seed} left no record "
                f"in the overlay {self.overlay.dir}"
            )
        return again(seed)

    def _live(self, todo: dict[int, list[int]], key: tuple) -> None:
        """Train ``{seed: [canonical indices]}`` with the table's recipe and the KD setting ``key``."""
        self._sync_overlay()  # another process may have trained them meanwhile
        todo = {s: sorted({c for c in cs if not self._st.has(key, c, s)}) for s, cs in todo.items()}
        todo = {s: cs for s, cs in todo.items() if cs}
        if todo:
            kd = self.kd if key == self._kd_main else self._kd_asked.get(key) or KD(self.teacher, *key)
            self._trainer.train(todo, key, kd, self.live_threads)
            self._sync_overlay()

    # --- vectorised queries ---------------------------------------------------------------------

    def _many(self, archs, metric, epoch, seed, rng, budget, kd_temperature, kd_alpha, test: bool):
        idx = arch_indices(archs)
        if type(seed) is str and seed == "expected":
            vals = self._expected(metric, epoch, test, kd_temperature, kd_alpha)[0][idx]
            if budget is not None:
                budget.charge(float(self._expected_cost(idx).sum()), queries=len(idx))
            return vals
        colkey = self._colkey(metric, epoch, test)
        self._check_seed(seed)
        st = self._pick(seed, kd_temperature, kd_alpha)
        for attempt in range(3):
            if type(seed) is str:  # "mean"
                missing = st.n_have[idx] == 0
            elif seed is None:
                rows = self._sample_rows(st, idx, rng or self.rng)
                missing = rows < 0
            else:
                p = st.seed_pos.get(int(seed))
                rows = st.rows[p, idx] if p is not None else np.full(len(idx), -1, np.int32)
                missing = rows < 0
            if not missing.any():
                break
            if not st.mapped:
                self._st.map_canonical()
                st.map_canonical()
                continue
            miss = idx[missing]
            c = int(canon()[int(miss[0])])
            n_miss = len(np.unique(canon()[miss]))
            if self.fallback == "error" or attempt == 2:
                raise MissingRecord(
                    f"{self.pair}: {n_miss} of the asked architectures have no row for seed {seed!r} (first: "
                    f"architecture {int(miss[0])}, canonical {c}; recorded seeds of the table: {self.seeds}); "
                    f"missing seeds are never filled from another seed"
                    + (
                        "; open with fallback='live' to train them"
                        if self.fallback == "error"
                        else f"; live training left no record in {self.overlay.dir}"
                    )
                )
            if budget is not None and not budget.affordable(0.0, len(idx)):
                budget.charge(0.0, len(idx))  # raises BudgetExhausted before any training
            train_seed = int(seed) if isinstance(seed, (int, np.integer)) else self.seeds[0]
            self._live({train_seed: sorted({int(x) for x in canon()[miss]})}, self._st.key_of(st))
            st = self._pick(seed, kd_temperature, kd_alpha)
        if type(seed) is str:
            vals = st.mean_arr(colkey)[idx]
        else:
            vals = st.col(colkey)[rows]
        if budget is not None:
            scale = 1.0 if epoch is None else epoch / self.epochs
            budget.charge(float(st.cost[idx].sum()) * scale, queries=len(idx), share=scale)
        return vals

    @staticmethod
    def _sample_rows(st: Store, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if st.ns == 0:
            return np.full(len(idx), -1, np.int32)
        if st.ns == 1:
            return st.rows[0, idx]
        sub = st.rows[:, idx]  # (S, n)
        have = sub >= 0
        cnt = have.sum(0)
        k = np.floor(rng.random(len(idx)) * cnt).astype(np.int64)  # k-th available seed
        pos = np.argmax(np.cumsum(have, 0) > k[None, :], axis=0)
        out = sub[pos, np.arange(len(idx))]
        out[cnt == 0] = -1
        return out

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
        """``query`` for many architectures at once (float64 array; ``seed=None`` samples a seed per
        architecture); the budget is charged the sum, or nothing when it does not fit."""
        return self._many(archs, metric, epoch, seed, rng, budget, kd_temperature, kd_alpha, test=False)

    def test(
        self,
        arch,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> float:
        """A test (or any) metric, for scoring; never charged to a budget."""
        i = arch if type(arch) is int and 0 <= arch < N else arch_index(arch)  # inlined as in query
        if type(seed) is str and seed == "expected":
            return self._expected(metric, None, True, kd_temperature, kd_alpha)[1][i]
        if kd_temperature is None and kd_alpha is None:  # Stores.pick at the table's own setting, as in query
            st = self._st.iso if (seed is None or type(seed) is str) and not self.include_overlay else self._st.main
        else:
            st = self._pick(seed, kd_temperature, kd_alpha)
        key = colkey(metric, None, True, self.epochs, self._where)  # (what _colkey / _check_seed call)
        check_seed(seed, self.pair, self.seeds)
        req = ("test", metric, None)
        if type(seed) is str:
            if st.n_have_l[i] == 0:
                return self._miss(i, st, seed, None, self._test_again(arch, metric, kd_temperature, kd_alpha))
            return st.mean_list(req, key)[i]
        if seed is None:
            return self.test_many([i], metric, seed=None, kd_temperature=kd_temperature, kd_alpha=kd_alpha)[0].item()
        p = st.seed_pos.get(int(seed))
        r = st.rows_l[p][i] if p is not None else -1
        if r < 0:
            return self._miss(i, st, int(seed), None, self._test_again(arch, metric, kd_temperature, kd_alpha))
        return st.qlist(req, key)[r]

    def _test_again(self, arch, metric, kd_temperature, kd_alpha):
        """``test`` of the same read at another seed (what :meth:`_miss` calls once rows exist)."""
        return lambda s: self.test(arch, metric, seed=s, kd_temperature=kd_temperature, kd_alpha=kd_alpha)

    def test_many(
        self,
        archs,
        metric: str = "test_acc",
        *,
        seed="mean",
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        """``test`` for many architectures at once (float64 array)."""
        return self._many(archs, metric, None, seed, None, None, kd_temperature, kd_alpha, test=True)

    # --- everything else --------------------------------------------------------------------------

    def cost(self, arch, epoch: int | None = None) -> float:
        """Simulated seconds a query at ``epoch`` costs: recorded train_seconds (seed mean) * epoch / epochs."""
        i = arch_index(arch)
        if epoch is not None:
            self._colkey("valid_acc", epoch, False)  # range check
        st = self._st.main
        if st.n_have_l[i] == 0:
            return self._miss(i, st, "mean", None, lambda s: self.cost(arch, epoch))
        c = st.cost_l[i]
        return c if epoch is None else c * epoch / self.epochs

    def best(self, metric: str = "test_acc", *, seed="mean") -> tuple[int, float]:
        """The table's best architecture for ``metric`` (max, or min for losses / ECE / KL / seconds)
        and its value: the oracle that regret is measured against. Table rows only, never the overlay."""
        if type(seed) is str and seed == "expected":  # over the table's architectures, like the mean
            vals = self._expected(metric, None, True)[0][self.archs]
            j = int(np.nanargmin(vals) if metric in LOWER_IS_BETTER else np.nanargmax(vals))
            return int(self.archs[j]), float(vals[j])
        colkey = self._colkey(metric, None, True)
        self._check_seed(seed)
        st = self._st.table
        rows = st.rows[:, self.archs]  # table architectures are canonical: right whether mapped or not
        if type(seed) is str:
            archs, vals = self.archs, seed_mean(st.col(colkey), rows)
        else:
            p = st.seed_pos.get(int(seed))
            if p is None:
                raise ValueError(f"seed {seed} is not recorded in {self.pair}; recorded seeds: {self.seeds}")
            ok = rows[p] >= 0
            archs, vals = self.archs[ok], st.col(colkey)[rows[p][ok]]
        if not np.isfinite(vals).any():
            raise ValueError(f"{self.pair}: {metric} is not recorded (all nan) for seed {seed!r}")
        j = int(np.nanargmin(vals) if metric in LOWER_IS_BETTER else np.nanargmax(vals))
        return int(archs[j]), float(vals[j])

    def curve(
        self,
        arch,
        name: str = "valid_acc_curve",
        *,
        seed=None,
        budget: Budget | None = None,
        kd_temperature: float | None = None,
        kd_alpha: float | None = None,
    ) -> np.ndarray:
        """A per-epoch curve (valid_acc_curve, train_acc, train_loss, epoch_seconds) as float64 array
        (``seed`` as in ``query``). With a budget, it is charged like a query of the final epoch."""
        if name == "valid_acc":
            name = "valid_acc_curve"
        if name not in CURVES:
            raise ValueError(f"unknown curve {name!r}; valid curves: {', '.join(CURVES)}")
        i = arch_index(arch)
        self._check_seed(seed)
        st = self._pick(seed, kd_temperature, kd_alpha)

        def again(s):
            return self.curve(arch, name, seed=s, budget=budget, kd_temperature=kd_temperature, kd_alpha=kd_alpha)

        arr = st.curve_arr(name)
        if type(seed) is str:
            if st.n_have_l[i] == 0:
                return self._miss(i, st, seed, budget, again)
            rows = st.rows[:, i]
            out = arr[rows[rows >= 0]].mean(0)
        else:
            if seed is None:
                r = int(self._sample_rows(st, np.array([i]), self.rng)[0])
            else:
                p = st.seed_pos.get(int(seed))
                r = st.rows_l[p][i] if p is not None else -1
            if r < 0:
                return self._miss(i, st, None if seed is None else int(seed), budget, again)
            out = arr[r].copy()
        if budget is not None:
            budget.charge(st.cost_l[i])
        return out

    def record(
        self, arch, *, seed: int = 0, kd_temperature: float | None = None, kd_alpha: float | None = None
    ) -> dict:
        """The full row of one architecture and (int) seed (``source`` says "table" or "live")."""
        i = arch_index(arch)
        self._check_seed(seed)
        if not isinstance(seed, (int, np.integer)):
            raise ValueError(f"record() needs an int seed; {self.pair} records seeds {self.seeds}")
        seed = int(seed)
        st = self._pick(seed, kd_temperature, kd_alpha)
        p = st.seed_pos.get(seed)
        r = st.rows_l[p][i] if p is not None else -1
        if r < 0:
            return self._miss(
                i, st, seed, None, lambda s: self.record(arch, seed=s, kd_temperature=kd_temperature, kd_alpha=kd_alpha)
            )
        return st.src.full().slice(r, 1).to_pylist()[0]

    def info(self, arch) -> dict:
        """Params, FLOPs (one forward pass of one sample) and latency (ms per sample) of the
        architecture's canonical form, from ``archs-<recipe_id>.parquet``; computed live (and kept in
        memory) when that file is missing or lacks the architecture."""
        return self._facts.info(arch_index(arch))

    def info_many(self, archs, key: str = "params") -> np.ndarray:
        """One architecture fact for many architectures (float64; live-computed where missing)."""
        return self._facts.info_many(arch_indices(archs), key)

    def descriptor(self) -> np.ndarray:
        """The task's description vector (DaSS's task embedding), from the teacher's cached logits."""
        return facts.logit_descriptor(self.dataset, self.teacher)

    def default_pool(self) -> LazyPool:
        """Every table under this bench's root, opened lazily (with this bench's ``fallback`` and
        ``allow_unlisted``), this bench for its own pair: what ``search.run`` reads other pairs from when
        it is given no pool."""
        root, fallback, unlisted = self.root, self.fallback, self.allow_unlisted
        return LazyPool(
            discover(root), lambda pair: open(pair, root, fallback, allow_unlisted=unlisted), {self.pair: self}
        )

    def frame(self):
        """The table and the overlay rows (overlay first) as a polars DataFrame, for analysis."""
        import polars as pl

        ov = self._st.ov
        t = pa.concat_tables([ov, self._file.full()]) if ov.num_rows else self._file.full()
        return pl.from_arrow(t)

    def refresh(self) -> bool:
        """Read overlay rows written by other processes since this bench looked; True if any."""
        return self._sync_overlay()

    def __repr__(self) -> str:
        return (
            f"<Bench {self.pair} recipe {self.recipe_id}: {len(self.archs)} archs, seeds {self.seeds}, "
            f"{self._st.ov.num_rows} overlay rows, fallback={self.fallback}>"
        )


# --- opening --------------------------------------------------------------------------------------


def open(
    pair: str,
    root: Path | str | None = None,
    fallback: str = "live",  # noqa: A001
    overlay_dir: Path | str | None = None,
    recipe_id: str | None = None,
    rng: np.random.Generator | int | None = None,
    allow_unlisted: bool = False,
    include_overlay: bool = False,
) -> Bench:
    """Open one pair's table (``recipe_id``: an id, or a version name such as ``"v2"``). ``overlay_dir``:
    the live overlay's base folder (default ``$DANAS_CACHE/overlay``); ``rng`` seeds ``seed=None`` queries.
    ``include_overlay=True`` lets seed means and sampled seeds read seeds trained live too (by default
    they read the shipped rows only, so scores do not depend on a user's cache).
    Every file loaded is checked against ``root``'s MANIFEST (sha256) first; ``allow_unlisted=True``
    also opens files it does not list (tables of your own), which are then only range-checked."""
    root = Path(root) if root is not None else tables_dir()
    path = table_for(pair, root, recipe_id)
    return Bench(pair, path, root, fallback, overlay_dir, rng, allow_unlisted, include_overlay)


def open_all(
    root: Path | str | None = None,
    fallback: str = "live",
    overlay_dir: Path | str | None = None,
    allow_unlisted: bool = False,
    include_overlay: bool = False,
) -> dict[str, Bench]:
    """Every served pair's table under ``root`` (``catalog.default_pairs``): ``{pair: Bench}``."""
    return {
        pair: open(pair, root, fallback, overlay_dir, allow_unlisted=allow_unlisted, include_overlay=include_overlay)
        for pair in default_pairs(root)
    }
