"""The column store under :class:`danas_bench.query.bench.Bench`, and architecture -> index conversion.

For every KD setting a :class:`Store` maps ``(seed, architecture index)`` to a row through an int array over
all 15,625 indices (after :meth:`Store.map_canonical`, isomorphic indices point at their canonical
architecture's row), and each metric is one float column over the rows. Scalar queries index stdlib
arrays (a Python float comes back, no numpy scalar); vectorised ones use numpy fancy indexing. No
dataframe is touched on the query path.
"""

from __future__ import annotations

import array
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.query.columns import _np, _np_lists, _take
from danas_bench.query.overlay import conform, dedupe

N = space.N_ARCHS
CURVES = ("valid_acc_curve", "train_acc", "train_loss", "epoch_seconds")

_STR_INDEX: dict[str, int] = {}  # architecture string -> index (parse once)
_OPS_INDEX: dict[tuple, int] = {}  # op tuple -> index
_CANON: list = [None]  # the canonical table once something needed it

_PY_TYPES = {"d": np.float64, "i": np.int32, "h": np.int16}


def pyarr(code: str, values: np.ndarray) -> array.array:
    """A stdlib ``array`` copy of ``values``: indexing it gives a Python float / int (no numpy scalar)
    at a sixth of a list's memory (8 bytes a float instead of a pointer and a float object)."""
    out = array.array(code)
    out.frombytes(np.ascontiguousarray(values, dtype=_PY_TYPES[code]).tobytes())
    return out


def canon() -> np.ndarray:
    if _CANON[0] is None:
        _CANON[0] = space.canonical_table()
    return _CANON[0]


def arch_index(arch) -> int:
    """Any accepted architecture form (index, string, op list) -> index. On every scalar query's path:
    an int in range returns at once, strings and op lists are parsed once."""
    if type(arch) is int and 0 <= arch < N:
        return arch
    if isinstance(arch, str):
        i = _STR_INDEX.get(arch)
        if i is None:
            i = _STR_INDEX[arch] = space.to_index(arch)
        return i
    if isinstance(arch, (list, tuple)):
        key = tuple(arch)
        if not all(type(v) is int or type(v) is str for v in key):  # 3.0 == 3 and True == 1 as dict keys:
            return space.to_index(arch)  # such lists are validated every time
        i = _OPS_INDEX.get(key)
        if i is None:
            i = space.to_index(arch)
            _OPS_INDEX[key] = i
        return i
    return space.to_index(arch)


def arch_indices(archs) -> np.ndarray:
    """Many architectures (index array, or a sequence of any accepted forms) -> int64 index array."""
    if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu":
        if archs.ndim != 1:
            raise ValueError(f"an index array must be 1-d, got shape {archs.shape}")
        idx = archs.astype(np.int64, copy=False)
    elif isinstance(archs, range):
        idx = np.arange(archs.start, archs.stop, archs.step, dtype=np.int64)
    else:
        if isinstance(archs, (str, bytes)) or not hasattr(archs, "__iter__"):
            raise ValueError(
                f"query_many takes a sequence of architectures, got a single {type(archs).__name__}; "
                f"use query() for one architecture"
            )
        idx = np.fromiter((arch_index(a) for a in archs), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= N):
        bad = int(idx[(idx < 0) | (idx >= N)][0])
        space.check_index(bad)  # raises with the usual message
    return idx


class MemRows:
    """Rows held in memory (overlay rows, or overlay + table rows)."""

    def __init__(self, table: pa.Table):
        self._t = dedupe_arch_seed(table)
        self.num_rows = self._t.num_rows

    def column(self, name: str) -> pa.ChunkedArray:
        return self._t.column(name)

    def full(self) -> pa.Table:
        return self._t


class TableFile:
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
            raise tb.TableError(
                f"{path}: Parquet data unreadable ({type(exc).__name__}: {exc}); delete it and regenerate"
            ) from exc
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
            col = (
                self._full.column(name) if self._full is not None else self._conform(name, self._read([name]).column(0))
            )
            self._cols[name] = col
        return col

    def full(self) -> pa.Table:
        if self._full is None:
            self._full = conform(self._read(None))
        return self._full


class Store:
    """Dense arrays of the rows of one KD setting; see the module docstring."""

    def __init__(self, src, epochs: int, cost_src: Store | None = None):
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
                raise tb.TableError(
                    f"{getattr(src, 'path', 'overlay')}: duplicate (arch_index, seed) rows; run `danas-bench verify`"
                )
        self.mapped = False
        self.q: dict = {}  # request key -> list of values over rows
        self.means: dict = {}  # request key -> list of seed means over all indices
        self._cols: dict = {}  # column key -> float64 array over rows
        self._curves: dict = {}
        self._set_rows(rows)

    def _set_rows(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.rows_l = [pyarr("i", r) for r in rows]
        have = rows >= 0
        self.n_have = have.sum(0)
        self.n_have_l = pyarr("h", self.n_have)
        # the only recorded seed's position where exactly one is recorded (-1 elsewhere): no RNG draw
        self.one_pos_l = pyarr("h", np.where(self.n_have == 1, np.argmax(have, 0) if self.ns else -1, -1))
        self.cost = seed_mean(self.col("train_seconds"), rows)
        if self.cost_src is not None:  # shipped seconds where shipped: training a seed live moves no charge
            self.cost = np.where(self.cost_src.n_have > 0, self.cost_src.cost, self.cost)
        self.cost_l = pyarr("d", self.cost)
        self.means = {}

    def map_canonical(self) -> None:
        """Let every index answer through its canonical architecture's rows."""
        if not self.mapped:
            self._set_rows(np.ascontiguousarray(self.rows[:, canon()]))
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
                raise tb.TableError(
                    f"column {name} holds curves of {exc.args[0]} epochs (or nulls); the recipe has {self.epochs}"
                ) from None
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
            lst = self.q[reqkey] = pyarr("d", self.col(colkey))
        return lst

    def mean_list(self, reqkey, colkey) -> list:
        lst = self.means.get(reqkey)
        if lst is None:
            lst = self.means[reqkey] = pyarr("d", seed_mean(self.col(colkey), self.rows))
        return lst

    def mean_arr(self, colkey) -> np.ndarray:
        return seed_mean(self.col(colkey), self.rows)

    def positions(self, i: int) -> list[int]:
        return [p for p in range(self.ns) if self.rows_l[p][i] >= 0]


class Stores:
    """Every store of one table, and the one choice of which store answers a KD setting and seed.

    ``table``: the shipped rows. ``main``: the table's own KD setting, overlay rows first (they win) and
    then the shipped rows. ``iso``: what seed means and sampled seeds read unless the bench includes the
    overlay: the shipped rows plus the live rows of architectures the table lacks, at the seed the live
    fallback trains them with (the table's first), so training further seeds live moves no score. Any
    other KD setting: its overlay rows only. Keys are :func:`kd_key` pairs.
    """

    def __init__(self, file: TableFile, epochs: int, kd_main: tuple):
        self.file, self.epochs, self.kd_main = file, epochs, kd_main
        self.table = self.iso = self.main = Store(file, epochs)
        self.archs = np.nonzero(self.table.n_have > 0)[0].astype(np.int64)
        self.archs.setflags(write=False)
        self.ov = pa.Table.from_batches([], schema=tb.RESULT_SCHEMA)
        self._by_key: dict = {kd_main: self.main}

    def add_overlay(self, new: pa.Table) -> None:
        """Take overlay rows read since the last call; every store but ``table`` is rebuilt."""
        self.ov = dedupe(pa.concat_tables([self.ov, new]))
        self._by_key = {}
        self.iso = self._iso()
        self.main = self.get(self.kd_main)

    def _overlay_rows(self, key: tuple) -> pa.Table:
        ov = self.ov
        if ov.num_rows:
            t = _np(ov.column("kd_temperature")).astype(np.float32)
            a = _np(ov.column("kd_alpha")).astype(np.float32)
            ov = _take(ov, np.nonzero((t == np.float32(key[0])) & (a == np.float32(key[1])))[0])
        return ov

    def _iso(self) -> Store:
        ov = self._overlay_rows(self.kd_main)
        if ov.num_rows:
            a = _np(ov.column("arch_index")).astype(np.int64)
            s = _np(ov.column("seed")).astype(np.int64)
            ov = _take(ov, np.nonzero((s == self.table.seeds[0]) & ~np.isin(a, self.archs))[0])
        if ov.num_rows == 0:
            return self.table
        st = Store(MemRows(pa.concat_tables([ov, self.file.full()])), self.epochs)
        if self.table.mapped:
            st.map_canonical()
        return st

    def get(self, key: tuple) -> Store:
        """The store of a KD setting (built on first use; the table's own is ``main``)."""
        st = self._by_key.get(key)
        if st is None:
            ov = self._overlay_rows(key)
            if key == self.kd_main:
                st = (
                    self.table
                    if ov.num_rows == 0
                    else Store(MemRows(pa.concat_tables([ov, self.file.full()])), self.epochs, cost_src=self.iso)
                )
            else:
                st = Store(MemRows(ov), self.epochs)
            if self.main.mapped or self.table.mapped:
                st.map_canonical()
            self._by_key[key] = st
        return st

    def pick(self, seed, key: tuple, include_overlay: bool) -> Store:
        """The store that answers ``seed`` at KD setting ``key``: ``iso`` for "mean" / "expected" / None at
        the table's own setting unless ``include_overlay``, else that setting's store. (``Bench.query`` and
        ``Bench.test`` inline this rule for the table's own setting, whose store is ``main``: keep them
        alike.)"""
        st = self.get(key)
        if st is self.main and not include_overlay and (seed is None or type(seed) is str):
            return self.iso
        return st

    def key_of(self, st: Store) -> tuple:
        if st is self.main or st is self.table or st is self.iso:
            return self.kd_main
        for k, v in self._by_key.items():
            if v is st:
                return k
        raise RuntimeError("store not found")  # pragma: no cover

    def has(self, key: tuple, c: int, seed: int) -> bool:
        st = self.get(key)
        p = st.seed_pos.get(seed)
        return p is not None and st.rows[p, c] >= 0

    def map_canonical(self) -> None:
        """Let every index answer through its canonical architecture's rows (done once, on the first need)."""
        if self.main.mapped:
            return
        # (the shipped stores first: the others' charges read their costs)
        for st in {id(s): s for s in (self.table, self.iso, self.main, *self._by_key.values())}.values():
            st.map_canonical()


def seed_mean(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
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


def dedupe_arch_seed(table: pa.Table) -> pa.Table:
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


def kd_key(temperature, alpha) -> tuple[float, float]:
    return float(np.float32(temperature)), float(np.float32(alpha))
