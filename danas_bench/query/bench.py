"""The query API: open a pair's table and ask it anything in microseconds.

::

    import danas_bench as db
    bench = db.open("digits/resnet")
    bench.query("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    bench.query(1234, "valid_acc", epoch=3, seed="mean", budget=budget)
    bench.test(1234)                # the test accuracy (seed mean), never charged: for scoring only

How it is fast: a table is read once into dense numpy arrays; for every KD setting a *store* maps
``(seed, architecture index)`` to a row through an int array over all 15,625 indices (isomorphic
indices point at their canonical architecture's row), and each metric is one float column over the
rows. The scalar path is a few dict and stdlib-array look-ups (a column becomes an ``array('d')`` on
first use, so indexing gives a Python float); ``query_many`` is numpy fancy indexing. No dataframe is touched on the query path.

Rules (DESIGN.md, "Query API"): searchers see validation and training metrics only (``query``,
``query_many``, ``curve``); test metrics come from ``test`` / ``test_many``, which are never charged.
``seed=None`` samples one of the seeds recorded for the architecture with the caller's RNG; missing
seeds are never filled from another seed. Seed means and sampled seeds read the shipped rows only
(seeds a user trained live change no score) unless the bench is opened with ``include_overlay=True``.
What the table does not hold (an architecture, a seed, a KD temperature or weight) is trained live with the table's recipe (``fallback="live"``), cached in the
overlay (:mod:`danas_bench.query.overlay`) and read from there later; ``fallback="error"`` raises
:class:`MissingRecord` instead.
"""

from __future__ import annotations

import array
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from danas_bench.core import space
from danas_bench.core import schema as tb
from danas_bench.core.budget import Budget, BudgetExhausted  # noqa: F401  (re-exported)
from danas_bench.query.columns import _np, _np_chunk, _np_lists, _take  # noqa: F401  (Arrow -> numpy without pandas)
from danas_bench.query.overlay import Overlay, conform
from danas_bench.core.recipe import KD, Recipe, check_kd
from danas_bench.tables.manifest import check_listed

N = space.N_ARCHS
FALLBACKS = ("live", "error")
CURVES = ("valid_acc_curve", "train_acc", "train_loss", "epoch_seconds")
# metrics a searcher may query; the value is the curve that answers ``epoch=`` (None: final only)
VISIBLE = {"valid_acc": "valid_acc_curve", "valid_acc_curve": "valid_acc_curve", "train_acc": "train_acc",
           "train_loss": "train_loss", "valid_loss": None, "valid_ece": None, "valid_kl_teacher": None,
           "valid_agreement": None, "train_seconds": None}
TEST = {"test_acc": None, "test_loss": None, "test_ece": None, "test_kl_teacher": None, "test_agreement": None}
ALL = {**VISIBLE, **TEST}
LOWER_IS_BETTER = {"valid_loss", "valid_ece", "valid_kl_teacher", "train_loss", "train_seconds",
                   "test_loss", "test_ece", "test_kl_teacher"}
INFO = ("params", "flops", "latency_ms")
LIVE_CHUNK = 16  # architectures trained at once by the fused engine on a live miss

_STR_INDEX: dict[str, int] = {}   # architecture string -> index (parse once)
_OPS_INDEX: dict[tuple, int] = {}  # op tuple -> index
_CANON: list = [None]              # the canonical table once something needed it
_RID = re.compile(r"^[0-9a-f]{16}$")


_KD_TYPES = (int, float, type(None))


class MissingRecord(LookupError):
    """The table (and overlay) hold no row for this architecture / seed / KD setting, and
    ``fallback="error"``."""


_PY_TYPES = {"d": np.float64, "i": np.int32, "h": np.int16}


def _pyarr(code: str, values: np.ndarray) -> array.array:
    """A stdlib ``array`` copy of ``values``: indexing it gives a Python float / int (no numpy scalar)
    at a sixth of a list's memory (8 bytes a float instead of a pointer and a float object)."""
    out = array.array(code)
    out.frombytes(np.ascontiguousarray(values, dtype=_PY_TYPES[code]).tobytes())
    return out


def _canon() -> np.ndarray:
    if _CANON[0] is None:
        _CANON[0] = space.canonical_table()
    return _CANON[0]


def _index(arch) -> int:
    """Any accepted architecture form -> index (strings and op tuples through a cache)."""
    if isinstance(arch, str):
        i = _STR_INDEX.get(arch)
        if i is None:
            i = _STR_INDEX[arch] = space.to_index(arch)
        return i
    if isinstance(arch, (list, tuple)):
        key = tuple(arch)
        if not all(type(v) is int or type(v) is str for v in key):  # 3.0 == 3 and True == 1 as dict keys:
            return space.to_index(arch)                           # such lists are validated every time
        i = _OPS_INDEX.get(key)
        if i is None:
            i = space.to_index(arch)
            _OPS_INDEX[key] = i
        return i
    return space.to_index(arch)


def _indices(archs) -> np.ndarray:
    """Many architectures (index array, or a sequence of any accepted forms) -> int64 index array."""
    if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu":
        if archs.ndim != 1:
            raise ValueError(f"an index array must be 1-d, got shape {archs.shape}")
        idx = archs.astype(np.int64, copy=False)
    elif isinstance(archs, range):
        idx = np.arange(archs.start, archs.stop, archs.step, dtype=np.int64)
    else:
        if isinstance(archs, (str, bytes)) or not hasattr(archs, "__iter__"):
            raise ValueError(f"query_many takes a sequence of architectures, got a single {type(archs).__name__}; "
                             f"use query() for one architecture")
        idx = np.fromiter((a if type(a) is int and 0 <= a < N else _index(a) for a in archs), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= N):
        bad = int(idx[(idx < 0) | (idx >= N)][0])
        space.check_index(bad)  # raises with the usual message
    return idx


class _Mem:
    """Rows held in memory (overlay rows, or overlay + table rows)."""

    def __init__(self, table: pa.Table):
        self._t = _dedupe_arch_seed(table)
        self.num_rows = self._t.num_rows

    def column(self, name: str) -> pa.ChunkedArray:
        return self._t.column(name)

    def full(self) -> pa.Table:
        return self._t


class _File:
    """A table file whose columns are read on first use: an open reads only the three columns the
    query path needs at once (a full read is ~20x the time and ~80x the memory)."""

    KEYS = ["arch_index", "seed", "train_seconds"]

    def __init__(self, path: Path):
        self.path = path
        self._stamp = self._stat()
        try:
            pf = pq.ParquetFile(path, page_checksum_verification=True)
            names = set(pf.schema_arrow.names)  # (a property that rebuilds the schema on every call)
            missing = [n for n in tb.RESULT_SCHEMA.names if n not in names]
            if missing:
                raise tb.TableError(f"{path}: columns {missing} are missing; regenerate the table")
            t = pf.read(columns=self.KEYS)
        except tb.TableError:
            raise
        except Exception as exc:
            raise tb.TableError(f"{path}: Parquet data unreadable ({type(exc).__name__}: {exc}); "
                                f"delete it and regenerate") from exc
        self._cols = {n: self._conform(n, t.column(n)) for n in self.KEYS}
        for n in self.KEYS:
            tb.check_values(n, _np(self._cols[n]), path)
        self.num_rows = t.num_rows
        self._full = None

    def _stat(self):
        st = os.stat(self.path)
        return st.st_size, st.st_mtime_ns

    @staticmethod
    def _conform(name, col):
        want = tb.RESULT_SCHEMA.field(name).type
        return col if col.type == want else col.cast(want)

    def _read(self, columns):
        if self._stat() != self._stamp:
            raise tb.TableError(f"{self.path} changed on disk after it was opened; open the pair again")
        try:
            return pq.ParquetFile(self.path, page_checksum_verification=True).read(columns=columns)
        except Exception as exc:
            raise tb.TableError(f"{self.path}: Parquet data unreadable ({type(exc).__name__}: {exc})") from exc

    def column(self, name: str) -> pa.ChunkedArray:
        col = self._cols.get(name)
        if col is None:
            col = self._full.column(name) if self._full is not None else \
                self._conform(name, self._read([name]).column(0))
            self._cols[name] = col
        return col

    def full(self) -> pa.Table:
        if self._full is None:
            self._full = conform(self._read(None))
        return self._full


class _Store:
    """Dense arrays of the rows of one KD setting; see the module docstring."""

    def __init__(self, src, epochs: int, cost_src: "_Store | None" = None):
        self.src, self.epochs, self.n = src, epochs, src.num_rows
        self.cost_src = cost_src  # charges read this store's cost where it holds the architecture
        a = _np(src.column("arch_index")).astype(np.int64)
        s = _np(src.column("seed")).astype(np.int64)
        self.seeds = sorted(set(s.tolist()))  # (np.unique imports numpy.ma: slow on a cold start)
        self.seed_pos = {x: p for p, x in enumerate(self.seeds)}
        self.ns = len(self.seeds)
        rows = np.full((self.ns, N), -1, dtype=np.int32)
        if self.n:
            sp = np.searchsorted(self.seeds, s)
            rows[sp, a] = np.arange(self.n, dtype=np.int32)
            if (rows >= 0).sum() != self.n:  # merge() guarantees unique rows; overlay rows are deduped
                raise tb.TableError(f"{getattr(src, 'path', 'overlay')}: duplicate (arch_index, seed) rows; "
                                    f"run `danas-bench verify`")
        self.mapped = False
        self.q: dict = {}       # request key -> list of values over rows
        self.means: dict = {}   # request key -> list of seed means over all indices
        self._cols: dict = {}   # column key -> float64 array over rows
        self._curves: dict = {}
        self._set_rows(rows)

    def _set_rows(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.rows_l = [_pyarr("i", r) for r in rows]
        have = rows >= 0
        self.n_have = have.sum(0)
        self.n_have_l = _pyarr("h", self.n_have)
        # the only recorded seed's position where exactly one is recorded (-1 elsewhere): no RNG draw
        self.one_pos_l = _pyarr("h", np.where(self.n_have == 1, np.argmax(have, 0) if self.ns else -1, -1))
        self.cost = _seed_mean(self.col("train_seconds"), rows)
        if self.cost_src is not None:  # shipped seconds where shipped: training a seed live moves no charge
            self.cost = np.where(self.cost_src.n_have > 0, self.cost_src.cost, self.cost)
        self.cost_l = _pyarr("d", self.cost)
        self.means = {}

    def map_canonical(self) -> None:
        """Let every index answer through its canonical architecture's rows."""
        if not self.mapped:
            self._set_rows(np.ascontiguousarray(self.rows[:, _canon()]))
            self.mapped = True

    def _raw(self, name: str) -> np.ndarray:
        arr = _np(self.src.column(name), np.float64)  # nulls -> nan
        tb.check_values(name, arr, getattr(self.src, "path", "overlay"))
        return arr

    def curve_arr(self, name: str) -> np.ndarray:
        arr = self._curves.get(name)
        if arr is None:
            try:
                arr = _np_lists(self.src.column(name), self.epochs)
                tb.check_values(name, arr, getattr(self.src, "path", "overlay"))
                self._curves[name] = arr
            except tb.TableError:
                raise
            except ValueError as exc:
                raise tb.TableError(f"column {name} holds curves of {exc.args[0]} epochs (or nulls); "
                                    f"the recipe has {self.epochs}") from None
        return arr

    def col(self, key) -> np.ndarray:
        """key: a scalar column name, a curve name (its last epoch) or (curve, epoch)."""
        arr = self._cols.get(key)
        if arr is None:
            if isinstance(key, tuple):
                arr = np.ascontiguousarray(self.curve_arr(key[0])[:, key[1] - 1])
            elif key in CURVES:
                arr = np.ascontiguousarray(self.curve_arr(key)[:, -1]) if self.epochs else np.zeros(self.n)
            else:
                arr = self._raw(key)
            self._cols[key] = arr
        return arr

    def qlist(self, reqkey, colkey) -> list:
        lst = self.q.get(reqkey)
        if lst is None:
            lst = self.q[reqkey] = _pyarr("d", self.col(colkey))
        return lst

    def mean_list(self, reqkey, colkey) -> list:
        lst = self.means.get(reqkey)
        if lst is None:
            lst = self.means[reqkey] = _pyarr("d", _seed_mean(self.col(colkey), self.rows))
        return lst

    def mean_arr(self, colkey) -> np.ndarray:
        return _seed_mean(self.col(colkey), self.rows)

    def positions(self, i: int) -> list[int]:
        return [p for p in range(self.ns) if self.rows_l[p][i] >= 0]


def _cache_hint() -> str:
    from danas_bench.core.paths import cache_dir

    return str(cache_dir())


def _seed_mean(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean over the recorded seeds of every index (nan where none is recorded)."""
    if rows.shape[0] == 0:
        return np.full(rows.shape[1], np.nan)
    if rows.shape[0] == 1:
        out = np.full(rows.shape[1], np.nan)
        ok = rows[0] >= 0
        out[ok] = values[rows[0][ok]]
        return out
    have = rows >= 0
    vals = np.where(have, values[np.where(have, rows, 0)] if len(values) else 0.0, 0.0)
    cnt = have.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, vals.sum(0) / cnt, np.nan)


def _dedupe_arch_seed(table: pa.Table) -> pa.Table:
    """First row of every (arch_index, seed): overlay rows come first, so they win."""
    if table.num_rows == 0:
        return table
    a = _np(table.column("arch_index")).astype(np.int64)
    s = _np(table.column("seed")).astype(np.int64)
    key = a * 65536 + (s & 0xFFFF)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    dup = np.zeros(len(key), dtype=bool)
    dup[order[1:]] = ks[1:] == ks[:-1]  # a later row of the same (arch, seed)
    if not dup.any():
        return table
    return _take(table, np.nonzero(~dup)[0])


def _kd_key(temperature, alpha) -> tuple[float, float]:
    return float(np.float32(temperature)), float(np.float32(alpha))


class Bench:
    """One pair's table (plus the live overlay). Create it with :func:`open`."""

    def __init__(self, pair: str, path: Path, root: Path, fallback: str = "live",
                 overlay_dir: Path | str | None = None, rng: np.random.Generator | int | None = None,
                 allow_unlisted: bool = False, include_overlay: bool = False):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.path, self.root, self.fallback = Path(path), Path(root), fallback
        self.allow_unlisted = bool(allow_unlisted)
        check_listed(self.path, self.root, self.allow_unlisted)  # a damaged table is an error
        self.meta = tb.read_meta(self.path)
        if self.meta.get("pair") != pair:
            raise tb.TableError(f"{path}: holds pair {self.meta.get('pair')!r}, expected {pair!r}")
        self.pair = pair
        self.dataset, self.teacher = pair.split("/")
        self.recipe = Recipe.from_dict(self.meta["recipe"])
        self.recipe_id = self.meta["recipe_id"]
        if self.recipe.recipe_id != self.recipe_id:
            raise tb.TableError(f"{path}: recipe in the metadata hashes to {self.recipe.recipe_id}, "
                                f"not the recorded recipe_id {self.recipe_id}")
        self.kd = KD(**self.meta["kd"])
        self.epochs = int(self.recipe.epochs)
        self._rng = rng  # made on first use (numpy.random's import is a tenth of a cold open)
        self._file = _File(self.path)
        self._kd_main = _kd_key(self.kd.temperature, self.kd.alpha)
        self._table_store = _Store(self._file, self.epochs)
        self._iso = self._table_store  # what seed="mean" / seed=None read unless include_overlay
        # opt-in: let seed="mean" and seed=None (query, test, curve, ...) read live overlay rows too
        self.include_overlay = bool(include_overlay)
        self.archs = np.nonzero(self._table_store.n_have > 0)[0].astype(np.int64)
        self.archs.setflags(write=False)
        self.seeds = list(self._table_store.seeds)
        self._check_planned_seeds()
        self.overlay = Overlay(pair, self.recipe_id, overlay_dir)
        self._ov = pa.Table.from_batches([], schema=tb.RESULT_SCHEMA)
        self._stores: dict = {}
        self._kd_of: dict = {}   # (kd_temperature, kd_alpha) as asked -> store key
        self._kd_asked: dict = {}  # store key -> KD
        self._tasks: dict = {}
        self._facts = None
        self._live_facts: dict = {}
        self._exp: dict | None = None  # metric -> (array, stdlib array) of the expected view
        # torch threads while training live (restored after): tiny students train fastest on one
        # thread, as the generation workers do (10x faster than 2 contended threads on a busy box);
        # None keeps torch's own setting
        self.live_threads: int | None = 1
        self._main = self._table_store
        self._sync_overlay()

    def _check_planned_seeds(self) -> None:
        """The table's seeds must be the planned ones (recorded in the metadata since merges write it,
        else in the shards' plan.json when it is there)."""
        planned = self.meta.get("seeds")
        if planned is None:
            plan = self.root / "shards" / f"{self.dataset}__{self.teacher}" / self.recipe_id / "plan.json"
            if plan.is_file():
                import json

                try:
                    planned = sorted({sh["seed"] for sh in json.loads(plan.read_text())["shards"]})
                except (ValueError, KeyError, TypeError):
                    planned = None  # a damaged plan is generate's business; the MANIFEST vouches for the table
        if planned is not None and not set(self.seeds) <= set(planned):
            raise tb.TableError(f"{self.path}: holds seeds {self.seeds} but its plan has seeds {planned}; the file "
                                f"is damaged: restore it from git or regenerate it")

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
        from danas_bench.query.overlay import dedupe

        self._ov = dedupe(pa.concat_tables([self._ov, new]))
        self._stores = {}
        self._iso = self._iso_store()
        self._main = self._store(self._kd_main)
        return True

    def _iso_store(self) -> _Store:
        """Shipped rows, plus the live rows of architectures the table lacks at the seed the live
        fallback trains for them (``seeds[0]``): so seed means and sampled seeds never move when a user
        trains further seeds live (DESIGN.md: the overlay never changes what the tables answer)."""
        ov = self._ov
        if ov.num_rows:
            t = _np(ov.column("kd_temperature")).astype(np.float32)
            al = _np(ov.column("kd_alpha")).astype(np.float32)
            a = _np(ov.column("arch_index")).astype(np.int64)
            s = _np(ov.column("seed")).astype(np.int64)
            keep = ((t == np.float32(self._kd_main[0])) & (al == np.float32(self._kd_main[1]))
                    & (s == self.seeds[0]) & ~np.isin(a, self.archs))
            ov = _take(ov, np.nonzero(keep)[0])
        if ov.num_rows == 0:
            return self._table_store
        st = _Store(_Mem(pa.concat_tables([ov, self._file.full()])), self.epochs)
        if self._table_store.mapped:
            st.map_canonical()
        return st

    def _pick(self, seed, kd_temperature=None, kd_alpha=None) -> _Store:
        """The store that answers ``seed``: shipped rows for "mean" / None unless ``include_overlay``."""
        st = self._main if kd_temperature is None and kd_alpha is None else \
            self._kd_store(kd_temperature, kd_alpha)
        if st is self._main and not self.include_overlay and (seed is None or type(seed) is str):
            return self._iso
        return st

    def _store(self, key: tuple) -> _Store:
        st = self._stores.get(key)
        if st is None:
            ov = self._ov
            if ov.num_rows:
                t = _np(ov.column("kd_temperature")).astype(np.float32)
                a = _np(ov.column("kd_alpha")).astype(np.float32)
                ov = _take(ov, np.nonzero((t == np.float32(key[0])) & (a == np.float32(key[1])))[0])
            if key == self._kd_main:
                st = self._table_store if ov.num_rows == 0 else \
                    _Store(_Mem(pa.concat_tables([ov, self._file.full()])), self.epochs, cost_src=self._iso)
            else:
                st = _Store(_Mem(ov), self.epochs)
            if self._main.mapped or self._table_store.mapped:
                st.map_canonical()
            self._stores[key] = st
        return st

    def _kd_store(self, kd_temperature, kd_alpha) -> _Store:
        ask = (kd_temperature, kd_alpha)
        # only plain numbers are cached (True == 1 as a key); anything else is validated every time
        key = self._kd_of.get(ask) if type(kd_temperature) in _KD_TYPES and type(kd_alpha) in _KD_TYPES else None
        if key is None:
            kd = self._kd(kd_temperature, kd_alpha)
            key = self._kd_of[ask] = _kd_key(kd.temperature, kd.alpha)
            self._kd_asked.setdefault(key, kd)  # live runs train the setting as asked
        return self._main if key == self._kd_main else self._store(key)

    def _kd(self, kd_temperature=None, kd_alpha=None) -> KD:
        t = self.kd.temperature if kd_temperature is None else check_kd("temperature", kd_temperature)
        a = self.kd.alpha if kd_alpha is None else check_kd("alpha", kd_alpha)
        if self.teacher == "none":
            if kd_alpha not in (None, 0, 0.0):
                raise ValueError(f"{self.pair} trains without a teacher (alpha = 0); kd_alpha={kd_alpha} needs "
                                 f"a pair with a teacher")
            return self.kd
        return KD(self.teacher, t, a)

    def _map(self) -> bool:
        """Map non-canonical indices onto their canonical rows (done once, on the first need)."""
        if self._main.mapped:
            return False
        # (the shipped stores first: the others' charges read their costs)
        for st in {id(s): s for s in (self._table_store, self._iso, self._main, *self._stores.values())}.values():
            st.map_canonical()
        return True

    # --- validation -----------------------------------------------------------------------------

    def _colkey(self, metric, epoch, test: bool):
        """Validate (metric, epoch) for query (test=False) or test (test=True); return the column key."""
        allowed = ALL if test else VISIBLE
        if type(metric) is not str:
            raise ValueError(f"metric must be a string, got {metric!r}; valid metrics: {', '.join(allowed)}")
        if metric not in allowed:
            if not test and metric in TEST:
                raise ValueError(f"{metric!r} is a test metric: searchers see validation metrics only; "
                                 f"read test metrics with bench.test() / bench.test_many() (never charged). "
                                 f"Query metrics: {', '.join(VISIBLE)}")
            if metric in INFO:
                raise ValueError(f"{metric!r} is an architecture fact: use bench.info(arch)[{metric!r}]")
            raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(allowed)}")
        if epoch is None:
            return metric
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise ValueError(f"epoch must be None (final) or an int in 1..{self.epochs}, got {epoch!r}")
        epoch = int(epoch)
        if not 1 <= epoch <= self.epochs:
            raise ValueError(f"epoch {epoch} is out of range: {self.pair} recipe {self.recipe_id} trains "
                             f"{self.epochs} epochs; valid epochs: 1..{self.epochs} (or None for the final value)")
        curve = allowed[metric]
        if curve is None:
            if epoch == self.epochs:
                return metric
            raise ValueError(f"{metric!r} is recorded after the last epoch only; per-epoch metrics: "
                             f"{', '.join(k for k, v in allowed.items() if v)}")
        return (curve, epoch) if epoch < self.epochs or curve != metric else curve

    def _expected(self, metric, epoch, test: bool, kd_temperature=None, kd_alpha=None) -> tuple:
        """(array, stdlib array) of ``metric``'s estimates over all indices from the pair's expected file
        (``danas-bench expected``): read once, never trained or fitted live."""
        if epoch is not None:
            raise ValueError("seed='expected' estimates final metrics only; pass epoch=None")
        if (kd_temperature is not None or kd_alpha is not None) and \
                self._kd_store(kd_temperature, kd_alpha) is not self._main:
            raise ValueError(f"{self.pair}: seed='expected' covers the table's own KD setting only")
        if self._exp is None:
            from danas_bench.query import estimates

            arrs = estimates.load(self.path, self.pair, self.root, getattr(self, "allow_unlisted", False))
            self._exp = {m: (a, _pyarr("d", a)) for m, a in arrs.items()}
        got = self._exp.get(metric)
        if got is None or (not test and metric.startswith("test_")):
            shown = [m for m in self._exp if test or not m.startswith("test_")]
            hint = " (test metrics through bench.test / test_many)" if metric in self._exp else ""
            raise ValueError(f"{self.pair}: no expected {metric!r} for this call{hint}; expected metrics: "
                             f"{', '.join(shown)}")
        return got

    def _expected_cost(self, idx):
        """Simulated seconds of expected queries: the canonical architecture's recorded cost (seed mean),
        or the table's mean cost where the table lacks the architecture (deterministic either way)."""
        cost = self._table_store.cost
        c = cost[_canon()[idx]]
        return np.where(np.isfinite(c), c, np.nanmean(cost))

    def _check_seed(self, seed) -> None:
        if seed is None or (isinstance(seed, str) and seed in ("mean", "expected")):
            return
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= tb.SEED_MAX:
            raise ValueError(f"seed must be None (sample a recorded seed), 'mean' or an int in [0, {tb.SEED_MAX}]; "
                             f"got {seed!r}; {self.pair} records seeds {self.seeds}")

    # --- the query path -------------------------------------------------------------------------

    def query(self, arch, metric: str = "valid_acc", epoch: int | None = None, seed=None,
              rng: np.random.Generator | None = None, budget: Budget | None = None,
              kd_temperature: float | None = None, kd_alpha: float | None = None) -> float:
        """A validation / training metric of one architecture (string, index or op list).

        ``seed``: None samples one recorded seed with ``rng`` (default: the bench's own); "mean" averages
        the recorded seeds; "expected" reads the cross-fitted estimate of the seed mean (the file
        `danas-bench expected` writes); an int reads that seed. ``epoch``: None is the final value, 1..epochs reads
        the curve. ``budget`` is charged one query and the recorded training seconds (scaled to the
        epoch) before the answer; :class:`BudgetExhausted` is raised when that does not fit.
        """
        if type(arch) is int and 0 <= arch < N:
            i = arch
        else:
            i = _STR_INDEX.get(arch) if type(arch) is str else None
            if i is None:
                i = _index(arch)
        if kd_temperature is None and kd_alpha is None:
            st = self._main if type(seed) is int or self.include_overlay else self._iso
        else:
            st = self._pick(seed, kd_temperature, kd_alpha)
        if type(metric) is not str or not (epoch is None or type(epoch) is int):
            self._colkey(metric, epoch, False)  # ValueError before the caches: 3.0 == 3 as a key
        req = metric if epoch is None else (metric, epoch)
        if seed is None:
            lst = st.q.get(req)
            if lst is None:
                lst = st.qlist(req, self._colkey(metric, epoch, False))
            if st.ns == 1:
                r = st.rows_l[0][i]
            else:
                nh = st.n_have_l[i]
                if nh == 1:
                    r = st.rows_l[st.one_pos_l[i]][i]
                elif nh == 0:
                    r = -1
                elif nh == st.ns:
                    r = st.rows_l[int((rng or self.rng).random() * nh)][i]
                else:
                    r = st.rows_l[st.positions(i)[int((rng or self.rng).random() * nh)]][i]
            if r < 0:
                return self._miss(i, st, seed, budget, lambda s: self.query(
                    arch, metric, epoch, s, rng, budget, kd_temperature, kd_alpha))
            v = lst[r]
        elif type(seed) is str and seed == "expected":
            v = self._expected(metric, epoch, False, kd_temperature, kd_alpha)[1][i]
            if budget is not None:
                budget.charge(float(self._expected_cost(i)))
            return v
        elif type(seed) is str and seed == "mean":
            if st.n_have_l[i] == 0:
                return self._miss(i, st, seed, budget, lambda s: self.query(
                    arch, metric, epoch, s, rng, budget, kd_temperature, kd_alpha))
            lst = st.means.get(req)
            if lst is None:
                lst = st.mean_list(req, self._colkey(metric, epoch, False))
            v = lst[i]
        else:
            lst = st.q.get(req)
            if lst is None:
                lst = st.qlist(req, self._colkey(metric, epoch, False))
            p = st.seed_pos.get(seed) if type(seed) is int else None
            r = st.rows_l[p][i] if p is not None else -1
            if r < 0:
                return self._miss(i, st, seed, budget, lambda s: self.query(
                    arch, metric, epoch, s, rng, budget, kd_temperature, kd_alpha))
            v = lst[r]
        if budget is not None:
            if epoch is None:
                budget.charge(st.cost_l[i])
            else:
                budget.charge(st.cost_l[i] * epoch / self.epochs, share=epoch / self.epochs)
        return v

    def _miss(self, i: int, st: _Store, seed, budget, again):
        """No row answers: map indices to canonical rows, or train live (or raise); then ``again(seed)``."""
        self._check_seed(seed)
        if isinstance(seed, np.integer):
            return again(int(seed))
        if not st.mapped:
            self._map()
            st.map_canonical()
            return again(seed)
        c = int(_canon()[i])
        train_seed = seed if isinstance(seed, int) else self.seeds[0]
        key = self._store_key(st)
        if self.fallback == "error":
            have = [s for s in st.seeds if st.rows_l[st.seed_pos[s]][i] >= 0]
            m = self._main
            live = [s for s in m.seeds if m.rows_l[m.seed_pos[s]][i] >= 0] if st is not m else []
            what = (f"architecture {i}" + (f" (canonical {c})" if c != i else "")
                    + (f" seed {seed}" if isinstance(seed, int) else "")
                    + ("" if key == self._kd_main else f" with KD temperature {key[0]:g} alpha {key[1]:g}"))
            raise MissingRecord(f"{self.pair}: {what} is not in the table "
                                + (f"(its recorded seeds: {have}; missing seeds are never filled from another "
                                   f"seed)" if have else f"(recorded seeds of the table: {self.seeds}; "
                                   f"{len(self.archs)} architectures)")
                                + (f"; the overlay holds seeds {live} of it (read them with include_overlay=True)"
                                   if live else "")
                                + "; open with fallback='live' to train it with the table's recipe")
        if budget is not None and not budget.affordable(0.0):
            budget.charge(0.0)  # raises BudgetExhausted before any training
        self._live({train_seed: [c]}, key)
        if not self._store_has(key, c, train_seed):
            raise RuntimeError(f"{self.pair}: live training of architecture {c} seed {train_seed} left no record "
                               f"in the overlay {self.overlay.dir}")
        return again(seed)

    def _store_key(self, st: _Store) -> tuple:
        if st is self._main or st is self._table_store or st is self._iso:
            return self._kd_main
        for k, v in self._stores.items():
            if v is st:
                return k
        raise RuntimeError("store not found")  # pragma: no cover

    def _store_has(self, key, c, seed) -> bool:
        st = self._main if key == self._kd_main else self._store(key)
        p = st.seed_pos.get(seed)
        return p is not None and st.rows[p, c] >= 0

    def _check_data(self) -> None:
        """Live rows must be trained on the table's data: its split hashes must match this machine's
        (a damaged or different data cache would otherwise give wrong rows, cached for good)."""
        from danas_bench.training import data as data_mod

        want, have = self.meta.get("split_hashes"), data_mod.load(self.dataset).split_hashes
        if want is not None and want != have:
            bad = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            raise tb.TableError(f"{self.pair}: the {self.dataset} data here differs from the table's (split hashes "
                                f"of {bad} differ), so live rows would not be comparable; delete the dataset cache "
                                f"under {_cache_hint()} and retry, or check the installed data package")

    def _live(self, todo: dict[int, list[int]], key: tuple) -> None:
        """Train ``{seed: [canonical indices]}`` with the table's recipe and the KD setting ``key``."""
        self._sync_overlay()  # another process may have trained them meanwhile
        todo = {s: sorted({c for c in cs if not self._store_has(key, c, s)}) for s, cs in todo.items()}
        todo = {s: cs for s, cs in todo.items() if cs}
        if not todo:
            return
        import torch

        from danas_bench.training.engine import Task, train_many

        kd = self.kd if key == self._kd_main else self._kd_asked.get(key) or KD(self.teacher, *key)
        task = self._tasks.get(key)
        if task is None:
            self._check_data()
            task = self._tasks[key] = Task.make(self.recipe, kd)
        threads = torch.get_num_threads()
        if self.live_threads:
            torch.set_num_threads(int(self.live_threads))
        try:
            for seed, cs in todo.items():
                for j in range(0, len(cs), LIVE_CHUNK):
                    recs = train_many(cs[j:j + LIVE_CHUNK], seed, task)
                    for r in recs:
                        r["source"] = "live"
                    self.overlay.append(recs, self.recipe.to_dict(), dict(kd.__dict__))
        finally:
            torch.set_num_threads(threads)
        self._sync_overlay()

    # --- vectorised queries ---------------------------------------------------------------------

    def _many(self, archs, metric, epoch, seed, rng, budget, kd_temperature, kd_alpha, test: bool):
        idx = _indices(archs)
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
                self._map()
                st.map_canonical()
                continue
            miss = idx[missing]
            c = int(_canon()[int(miss[0])])
            n_miss = len(np.unique(_canon()[miss]))
            if self.fallback == "error" or attempt == 2:
                raise MissingRecord(
                    f"{self.pair}: {n_miss} of the asked architectures have no row for seed {seed!r} (first: "
                    f"architecture {int(miss[0])}, canonical {c}; recorded seeds of the table: {self.seeds}); "
                    f"missing seeds are never filled from another seed"
                    + ("; open with fallback='live' to train them" if self.fallback == "error" else
                       f"; live training left no record in {self.overlay.dir}"))
            if budget is not None and not budget.affordable(0.0, len(idx)):
                budget.charge(0.0, len(idx))  # raises BudgetExhausted before any training
            train_seed = int(seed) if isinstance(seed, (int, np.integer)) else self.seeds[0]
            self._live({train_seed: sorted({int(x) for x in _canon()[miss]})}, self._store_key(st))
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
    def _sample_rows(st: _Store, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if st.ns == 0:
            return np.full(len(idx), -1, np.int32)
        if st.ns == 1:
            return st.rows[0, idx]
        sub = st.rows[:, idx]                    # (S, n)
        have = sub >= 0
        cnt = have.sum(0)
        k = np.floor(rng.random(len(idx)) * cnt).astype(np.int64)  # k-th available seed
        pos = np.argmax(np.cumsum(have, 0) > k[None, :], axis=0)
        out = sub[pos, np.arange(len(idx))]
        out[cnt == 0] = -1
        return out

    def query_many(self, archs, metric: str = "valid_acc", epoch: int | None = None, seed=0,
                   budget: Budget | None = None, rng: np.random.Generator | None = None,
                   kd_temperature: float | None = None, kd_alpha: float | None = None) -> np.ndarray:
        """``query`` for many architectures at once (float64 array); the budget is charged the sum."""
        return self._many(archs, metric, epoch, seed, rng, budget, kd_temperature, kd_alpha, test=False)

    def test(self, arch, metric: str = "test_acc", seed="mean", kd_temperature=None, kd_alpha=None) -> float:
        """A test (or any) metric, for scoring; never charged to a budget."""
        i = arch if type(arch) is int and 0 <= arch < N else _index(arch)
        if type(seed) is str and seed == "expected":
            return self._expected(metric, None, True, kd_temperature, kd_alpha)[1][i]
        st = self._pick(seed, kd_temperature, kd_alpha)
        colkey = self._colkey(metric, None, True)
        self._check_seed(seed)
        req = ("test", metric, None)
        if type(seed) is str:
            if st.n_have_l[i] == 0:
                return self._miss(i, st, seed, None, lambda s: self.test(arch, metric, s, kd_temperature, kd_alpha))
            return st.mean_list(req, colkey)[i]
        if seed is None:
            return self.test_many([i], metric, seed, kd_temperature, kd_alpha)[0].item()
        p = st.seed_pos.get(int(seed))
        r = st.rows_l[p][i] if p is not None else -1
        if r < 0:
            return self._miss(i, st, int(seed), None,
                              lambda s: self.test(arch, metric, s, kd_temperature, kd_alpha))
        return st.qlist(req, colkey)[r]

    def test_many(self, archs, metric: str = "test_acc", seed="mean", kd_temperature=None,
                  kd_alpha=None) -> np.ndarray:
        return self._many(archs, metric, None, seed, None, None, kd_temperature, kd_alpha, test=True)

    # --- everything else --------------------------------------------------------------------------

    def cost(self, arch, epoch: int | None = None) -> float:
        """Simulated seconds a query at ``epoch`` costs: recorded train_seconds (seed mean) * epoch / epochs."""
        i = arch if type(arch) is int and 0 <= arch < N else _index(arch)
        if epoch is not None:
            self._colkey("valid_acc", epoch, False)  # range check
        st = self._main
        if st.n_have_l[i] == 0:
            return self._miss(i, st, "mean", None, lambda s: self.cost(arch, epoch))
        c = st.cost_l[i]
        return c if epoch is None else c * epoch / self.epochs

    def best(self, metric: str = "test_acc", seed="mean") -> tuple[int, float]:
        """The table's best architecture for ``metric`` (max, or min for losses / ECE / KL / seconds)
        and its value: the oracle that regret is measured against. Table rows only, never the overlay."""
        if type(seed) is str and seed == "expected":  # over the table's architectures, like the mean
            vals = self._expected(metric, None, True)[0][self.archs]
            j = int(np.nanargmin(vals) if metric in LOWER_IS_BETTER else np.nanargmax(vals))
            return int(self.archs[j]), float(vals[j])
        colkey = self._colkey(metric, None, True)
        self._check_seed(seed)
        st = self._table_store
        rows = st.rows[:, self.archs]  # table architectures are canonical: right whether mapped or not
        if type(seed) is str:
            archs, vals = self.archs, _seed_mean(st.col(colkey), rows)
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

    def curve(self, arch, name: str = "valid_acc_curve", seed=0, budget: Budget | None = None,
              kd_temperature=None, kd_alpha=None) -> np.ndarray:
        """A per-epoch curve (valid_acc_curve, train_acc, train_loss, epoch_seconds) as float64 array.
        With a budget, it is charged like a query of the final epoch."""
        if name == "valid_acc":
            name = "valid_acc_curve"
        if name not in CURVES:
            raise ValueError(f"unknown curve {name!r}; valid curves: {', '.join(CURVES)}")
        i = arch if type(arch) is int and 0 <= arch < N else _index(arch)
        self._check_seed(seed)
        st = self._pick(seed, kd_temperature, kd_alpha)
        again = lambda s: self.curve(arch, name, s, budget, kd_temperature, kd_alpha)  # noqa: E731
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

    def record(self, arch, seed: int = 0, kd_temperature=None, kd_alpha=None) -> dict:
        """The full row of one architecture and seed (``source`` says "table" or "live")."""
        i = arch if type(arch) is int and 0 <= arch < N else _index(arch)
        self._check_seed(seed)
        if not isinstance(seed, (int, np.integer)):
            raise ValueError(f"record() needs an int seed; {self.pair} records seeds {self.seeds}")
        seed = int(seed)
        st = self._main if kd_temperature is None and kd_alpha is None else \
            self._kd_store(kd_temperature, kd_alpha)
        p = st.seed_pos.get(seed)
        r = st.rows_l[p][i] if p is not None else -1
        if r < 0:
            return self._miss(i, st, seed, None, lambda s: self.record(arch, s, kd_temperature, kd_alpha))
        return st.src.full().slice(r, 1).to_pylist()[0]

    def _load_facts(self):
        if self._facts is None:
            from danas_bench.core.paths import archs_file

            path = archs_file(self.dataset, self.recipe_id, self.root)
            facts = {k: np.full(N, np.nan) for k in INFO}
            if path.exists():
                check_listed(path, self.root, self.allow_unlisted)
                t = tb.read(path, columns=["arch_index", *INFO])
                a = _np(t.column("arch_index"))
                for k in INFO:
                    facts[k][a] = _np(t.column(k), np.float64)
            self._facts = facts
            self._facts_path = path
        return self._facts

    def info(self, arch) -> dict:
        """Params, FLOPs (one forward pass of one sample) and latency (ms per sample) of the
        architecture's canonical form, from ``archs-<recipe_id>.parquet``; computed live (and kept in
        memory) when that file is missing or lacks the architecture."""
        i = arch if type(arch) is int and 0 <= arch < N else _index(arch)
        c = int(_canon()[i])
        facts = self._load_facts()
        if not math.isnan(facts["params"][c]):
            return {"arch_index": c, "params": int(facts["params"][c]), "flops": int(facts["flops"][c]),
                    "latency_ms": float(facts["latency_ms"][c]), "source": "table"}
        if c not in self._live_facts:
            if self.fallback == "error":
                raise MissingRecord(f"{self.pair}: no params/FLOPs/latency for architecture {c}: "
                                    f"{self._facts_path} is missing or lacks it; run `danas-bench archs "
                                    f"dataset={self.dataset}` or open with fallback='live'")
            from danas_bench.tables import archinfo
            from danas_bench.training import data as data_mod

            f = archinfo.facts(c, self.recipe, data_mod.load(self.dataset))
            self._live_facts[c] = {"arch_index": c, "params": int(f["params"]), "flops": int(f["flops"]),
                                   "latency_ms": float(f["latency_ms"]), "source": "live"}
        return dict(self._live_facts[c])

    def info_many(self, archs, key: str = "params") -> np.ndarray:
        """One architecture fact for many architectures (float64; live-computed where missing)."""
        if key not in INFO:
            raise ValueError(f"unknown architecture fact {key!r}; valid: {', '.join(INFO)}")
        idx = _canon()[_indices(archs)]
        vals = self._load_facts()[key][idx]
        for j in np.nonzero(np.isnan(vals))[0]:
            vals[j] = self.info(int(idx[j]))[key]
        return vals

    def frame(self):
        """The table and the overlay rows (overlay first) as a polars DataFrame, for analysis."""
        import polars as pl

        t = pa.concat_tables([self._ov, self._file.full()]) if self._ov.num_rows else self._file.full()
        return pl.from_arrow(t)

    def refresh(self) -> bool:
        """Read overlay rows written by other processes since this bench looked; True if any."""
        return self._sync_overlay()

    def __repr__(self) -> str:
        return (f"<Bench {self.pair} recipe {self.recipe_id}: {len(self.archs)} archs, seeds {self.seeds}, "
                f"{self._ov.num_rows} overlay rows, fallback={self.fallback}>")


# --- opening --------------------------------------------------------------------------------------

def discover(root: Path | str | None = None) -> dict[str, dict[str, Path]]:
    """``{pair: {recipe_id: path}}`` of the tables under ``root`` (``tables/<dataset>/<teacher>-<id>.parquet``)."""
    from danas_bench.core.paths import tables_dir

    root = Path(root) if root is not None else tables_dir()
    out: dict[str, dict[str, Path]] = {}
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name in ("teachers", "shards") or d.name.startswith("."):
            continue
        for f in sorted(d.glob("*.parquet")):
            if f.name.startswith((".", "archs-")) or "-" not in f.stem:
                continue
            teacher, rid = f.stem.rsplit("-", 1)
            if _RID.match(rid):
                out.setdefault(f"{d.name}/{teacher}", {})[rid] = f
    return out


def _choose(pair: str, found: dict[str, Path], recipe_id: str | None) -> Path:
    if recipe_id is not None:
        if recipe_id not in found:
            raise ValueError(f"{pair} has no table of recipe {recipe_id!r}; recipes present: {sorted(found)}")
        return found[recipe_id]
    if len(found) == 1:
        return next(iter(found.values()))
    try:  # the dataset's configured recipe (conf/recipe/<dataset>.yaml), when it is among them
        from danas_bench.core.recipe import recipe_for

        rid = recipe_for(pair.split("/")[0]).recipe_id
        if rid in found:
            return found[rid]
    except ValueError:
        pass
    newest = max(found.values(), key=lambda p: p.stat().st_mtime)
    warnings.warn(f"{pair} has tables of several recipes {sorted(found)}; opening the newest, {newest.name}; "
                  f"pass recipe_id= to choose", stacklevel=3)
    return newest


def open(pair: str, root: Path | str | None = None, fallback: str = "live",  # noqa: A001
         overlay_dir: Path | str | None = None, recipe_id: str | None = None,
         rng: np.random.Generator | int | None = None, allow_unlisted: bool = False,
         include_overlay: bool = False) -> Bench:
    """Open one pair's table. ``overlay_dir`` is the base folder of the live overlay (default
    ``$DANAS_CACHE/overlay``); ``rng`` seeds the bench's own generator for ``seed=None`` queries.
    ``include_overlay=True`` lets seed means and sampled seeds read seeds trained live too (by default
    they read the shipped rows only, so scores do not depend on a user's cache).
    Every file loaded is checked against ``root``'s MANIFEST (sha256) first; ``allow_unlisted=True``
    also opens files it does not list (tables of your own), which are then only range-checked."""
    from danas_bench.core.paths import tables_dir

    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    root = Path(root) if root is not None else tables_dir()
    tables = discover(root)
    if pair not in tables:
        present = ", ".join(sorted(tables)) or "none"
        raise ValueError(f"no table for pair {pair!r} under {root}; pairs present: {present}. Pairs are "
                         f"'dataset/teacher' (teacher 'none' = no KD); make a table with "
                         f"`danas-bench generate pair=...`")
    return Bench(pair, _choose(pair, tables[pair], recipe_id), root, fallback, overlay_dir, rng, allow_unlisted,
                 include_overlay)


def open_all(root: Path | str | None = None, fallback: str = "live",
             overlay_dir: Path | str | None = None, allow_unlisted: bool = False,
             include_overlay: bool = False) -> dict[str, Bench]:
    """Every pair's table under ``root``: ``{pair: Bench}``."""
    return {pair: open(pair, root, fallback, overlay_dir, allow_unlisted=allow_unlisted,
                       include_overlay=include_overlay) for pair in discover(root)}


# --- CLI --------------------------------------------------------------------------------------------

def cli_query(cfg) -> int:
    """``danas-bench query "<arch>" pair=...``: print the record (or one metric) as JSON."""
    try:
        return _cli_query(cfg)
    except (ValueError, LookupError, BudgetExhausted) as exc:  # TableError is a ValueError
        raise SystemExit(f"danas-bench query: {exc}") from None


def _cli_query(cfg) -> int:
    from omegaconf import OmegaConf

    arch = cfg.arch
    if arch is None:
        raise SystemExit('usage: danas-bench query "<arch string | index | [op, ...]>" pair=dataset/teacher '
                         '[seed=0] [metric=valid_acc] [epoch=N] [kd.temperature=T kd.alpha=A] [fallback=error]')
    if OmegaConf.is_config(arch):
        arch = OmegaConf.to_container(arch)
    if not isinstance(arch, (str, int, list)) or isinstance(arch, bool):
        space.to_index(arch)  # ValueError saying what an architecture looks like
    bench = open(cfg.pair, cfg.get("root") or None, cfg.fallback, cfg.get("overlay_dir") or None,
                 allow_unlisted=bool(cfg.get("allow_unlisted", False)))
    kd_t, kd_a = cfg.kd.temperature, cfg.kd.alpha
    index = space.to_index(arch)
    head = {"pair": bench.pair, "recipe_id": bench.recipe_id, "asked": space.arch_str(index), "index": index,
            "canonical": space.canonical(index)}
    if cfg.get("metric"):
        m = cfg.metric
        v = (bench.test(arch, m, cfg.seed, kd_t, kd_a) if m in TEST else
             bench.query(arch, m, cfg.get("epoch"), cfg.seed, kd_temperature=kd_t, kd_alpha=kd_a))
        print(_json({**head, "metric": m, "epoch": cfg.get("epoch"), "seed": cfg.seed, "value": v}))
        return 0
    rec = bench.record(arch, cfg.seed, kd_t, kd_a)
    out = {**head, **rec}
    if cfg.get("info", True):
        try:
            out["info"] = bench.info(arch)
        except MissingRecord as exc:
            out["info"] = str(exc)
    print(_json(out))
    return 0


def _json(obj) -> str:
    """Valid JSON (RFC 8259): a nan or inf (a metric a pair does not record) is written as null."""
    import json

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (float, np.floating)):
            return float(x) if math.isfinite(x) else None
        if isinstance(x, np.integer):
            return int(x)
        return x

    return json.dumps(clean(obj), indent=1, allow_nan=False)
