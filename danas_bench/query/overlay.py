"""The live overlay: records trained by the live fallback, cached as Parquet beside the user's cache.

Layout: ``<base>/<dataset>/<teacher>/<recipe_id>/live-<time_ns>-<pid>-<random>.parquet`` where
``<base>`` is ``$DANAS_CACHE/overlay`` (or the platform cache dir) unless the caller names another.
Every write is a new file with a unique name, written atomically (temporary file, fsync, rename), so
a reader never sees a torn file and writers never overwrite each other. Writers also hold a file
lock while they check which keys ``(arch_index, seed, kd_temperature, kd_alpha)`` are already on disk
and write the rest, so several processes filling the same overlay lose no rows and write no duplicate
rows. Readers take no lock: a file is either absent or complete. :meth:`Overlay.compact` folds the
files into one.

A damaged file (unreadable, failing its page checksums or holding impossible values) is skipped with
one warning: its rows count as absent, so they are trained again and written to a new file, and
``compact`` moves it aside as ``<name>.corrupt`` instead of folding it in.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from danas_bench.core import schema as tb
from danas_bench.core.pairs import Pair

KEY_COLUMNS = ["arch_index", "seed", "kd_temperature", "kd_alpha"]
LOCK_TIMEOUT_S = 600.0


def default_base() -> Path:
    from danas_bench.core.paths import cache_dir

    return cache_dir() / "overlay"


def overlay_dir(pair: str, recipe_id: str, base: Path | str | None = None) -> Path:
    p = Pair.parse(pair)
    return (Path(base) if base is not None else default_base()) / p.dataset / p.teacher / recipe_id


def _f32(x) -> float:
    return float(np.float32(x))


def row_key(arch_index, seed, kd_temperature, kd_alpha) -> tuple:
    return int(arch_index), int(seed), _f32(kd_temperature), _f32(kd_alpha)


def table_keys(table: pa.Table) -> list[tuple]:
    cols = [table.column(c).to_pylist() for c in KEY_COLUMNS]
    return [row_key(*k) for k in zip(*cols)]


def dedupe(table: pa.Table) -> pa.Table:
    """Keep the first row of every (arch_index, seed, kd_temperature, kd_alpha)."""
    if table.num_rows == 0:
        return table
    seen, keep = set(), []
    for j, k in enumerate(table_keys(table)):
        if k not in seen:
            seen.add(k)
            keep.append(j)
    if len(keep) == table.num_rows:
        return table
    idx = np.asarray(keep, dtype=np.int64)  # wrapped without pa.array, which imports pandas
    return table.take(pa.Array.from_buffers(pa.int64(), len(idx), [None, pa.py_buffer(idx)]))


def conform(table: pa.Table) -> pa.Table:
    """Columns of RESULT_SCHEMA, in order, without file metadata."""
    if table.schema.names != tb.RESULT_SCHEMA.names:
        table = table.select(tb.RESULT_SCHEMA.names)
    if not table.schema.equals(tb.RESULT_SCHEMA, check_metadata=False):
        table = table.cast(tb.RESULT_SCHEMA)  # (imports pyarrow.compute: only for foreign column types)
    return table.replace_schema_metadata(None)


class Overlay:
    """The overlay files of one pair and recipe."""

    def __init__(self, pair: str, recipe_id: str, base: Path | str | None = None):
        self.pair, self.recipe_id = pair, recipe_id
        self.dir = overlay_dir(pair, recipe_id, base)
        self._seen: set[str] = set()  # files already returned by read_new
        self._keys: dict[str, list[tuple]] = {}  # file name -> its row keys (files never change)
        self._bad: set[str] = set()  # damaged files, warned about once

    @property
    def lock_path(self) -> Path:
        return self.dir / ".lock"

    def _lock(self):
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT_S)

    def files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("*.parquet") if not p.name.startswith("."))

    def _read(self, path: Path) -> pa.Table | None:
        """One overlay file, conformed and range-checked; None (with one warning) when it is foreign,
        unreadable or damaged: its rows are then absent and get trained again."""
        if path.name in self._bad:
            return None
        try:
            meta = tb.read_meta(path)
            if meta.get("recipe_id") != self.recipe_id or meta.get("pair") != self.pair:
                raise tb.TableError(
                    f"overlay file of {meta.get('pair')} recipe {meta.get('recipe_id')} in the "
                    f"folder of {self.pair} recipe {self.recipe_id}"
                )
            table = conform(pq.ParquetFile(path, page_checksum_verification=True).read())
            check_rows(table, path)
            return table
        except FileNotFoundError:  # compacted away between listing and reading
            return None
        except (tb.TableError, pa.ArrowException, OSError, KeyError, ValueError, TypeError) as exc:
            self._bad.add(path.name)
            warnings.warn(
                f"{path}: damaged overlay file skipped ({exc}); its rows will be trained again; "
                f"`compact()` moves it aside",
                stacklevel=3,
            )
            return None

    def read_new(self) -> pa.Table | None:
        """Rows of the files not read before by this object, oldest file first; None if there are none."""
        parts = []
        for p in self.files():
            if p.name in self._seen:
                continue
            self._seen.add(p.name)
            t = self._read(p)
            if t is not None and t.num_rows:
                parts.append(t)
        return pa.concat_tables(parts) if parts else None

    def read_all(self) -> pa.Table:
        parts = [t for t in (self._read(p) for p in self.files()) if t is not None]
        return dedupe(pa.concat_tables(parts)) if parts else pa.Table.from_batches([], schema=tb.RESULT_SCHEMA)

    def _keys_on_disk(self) -> set[tuple]:
        """Keys of the rows that readers can read: a damaged file's keys are not on disk (its values are
        unreadable, so its rows must be written again, or they would be missing for good)."""
        keys: set[tuple] = set()
        for p in self.files():
            if p.name not in self._keys:
                t = self._read(p)
                if t is None and not p.exists():
                    continue
                self._keys[p.name] = [] if t is None else table_keys(t)
            keys.update(self._keys[p.name])
        return keys

    def _meta(self, recipe: dict, kd: dict) -> dict:
        from danas_bench import __version__

        p = Pair.parse(self.pair)
        torch = sys.modules.get("torch")
        return {
            "pair": self.pair,
            "dataset": p.dataset,
            "teacher": p.teacher,
            "recipe": recipe,
            "recipe_id": self.recipe_id,
            "kd": kd,
            "source": "live",
            "machine": tb.machine(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "schema_version": tb.SCHEMA_VERSION,
            "code_version": __version__,
            "torch_version": getattr(torch, "__version__", None),
        }

    def append(self, records: list[dict], recipe: dict, kd: dict) -> Path | None:
        """Write the records whose keys are not on disk yet as one new file; return it (None: nothing new).

        ``records`` are RESULT_SCHEMA dicts of this pair and recipe (``source`` is set to ``live``).
        """
        for r in records:
            if r.get("recipe_id") != self.recipe_id:
                raise ValueError(
                    f"record of recipe {r.get('recipe_id')} cannot go to the overlay of recipe {self.recipe_id}"
                )
        check_rows(tb.to_table(records, {}), f"live training of {self.pair}")  # never cache a NaN row
        with self._lock():
            have = self._keys_on_disk()
            fresh = []
            for r in records:
                k = row_key(r["arch_index"], r["seed"], r["kd_temperature"], r["kd_alpha"])
                if k not in have:
                    have.add(k)
                    fresh.append({**r, "source": "live"})
            if not fresh:
                return None
            path = self.dir / f"live-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
            tb.write_atomic(tb.to_table(fresh, self._meta(recipe, kd)), path)
            self._keys[path.name] = [
                row_key(r["arch_index"], r["seed"], r["kd_temperature"], r["kd_alpha"]) for r in fresh
            ]
        return path

    def compact(self) -> Path | None:
        """Fold every overlay file into one (under the lock); return the new file (None: empty overlay)."""
        with self._lock():
            old = self.files()
            for p in old:
                if self._read(p) is None and p.exists():  # damaged: keep it aside, out of the overlay
                    os.replace(p, p.with_name(p.name + ".corrupt"))
                    self._keys.pop(p.name, None)
            old = self.files()
            if len(old) <= 1:
                return old[0] if old else None
            table = self.read_all()
            first = tb.read_meta(old[0])
            meta = {
                **first,
                "compacted_from": len(old),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            meta.pop("kd", None)  # rows may carry several KD settings
            # name it before every remaining file so that first-wins ordering is kept
            path = self.dir / f"live-{0:020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
            tb.write_atomic(table.replace_schema_metadata({tb.META_KEY: _json(meta)}), path)
            for p in old:
                p.unlink(missing_ok=True)
                self._keys.pop(p.name, None)
        return path


def check_rows(table: pa.Table, where) -> None:
    """Range-check every value column of overlay rows (TableError naming the column)."""
    from danas_bench.query.columns import _np, _np_lists

    for name in ("arch_index", "seed", *tb.UNIT_RANGE, *tb.NON_NEGATIVE):
        col = table.column(name)
        if pa.types.is_list(col.type):
            width = len(col[0]) if table.num_rows and col[0].is_valid else 0
            try:
                values = _np_lists(col, width)
            except ValueError:
                raise tb.TableError(f"{where}: column {name} holds curves of different lengths") from None
        else:
            values = _np(col, np.float64)
        tb.check_values(name, values, where)


def _json(meta: dict) -> bytes:
    import json

    return json.dumps(meta, sort_keys=True).encode()
