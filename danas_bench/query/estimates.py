"""The expected-accuracy files (``danas-bench expected``): where they live beside their table and how
they are read. Reading only: the query API uses this module, the fitting lives in ``expected``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.tables.manifest import check_listed

SUFFIX = ".expected.parquet"


def expected_path(table_path: Path) -> Path:
    """``<teacher>-<recipe_id>.parquet`` -> ``<teacher>-<recipe_id>.expected.parquet`` beside it."""
    table_path = Path(table_path)
    return table_path.with_name(table_path.stem + SUFFIX)


def load(table_path: Path, pair: str, root: Path | None = None, allow_unlisted: bool = False) -> dict[str, np.ndarray]:
    """``{metric: float64 array over all 15,625 indices}`` of a table's expected file; TableError when it
    is missing, differs from its MANIFEST entry, or was fitted on another version of the table. Reads
    a file only: nothing is ever trained or fitted here."""
    path = expected_path(table_path)
    if not path.exists():
        raise tb.TableError(
            f"{pair}: no expected-accuracy table {path.name}; make it with `danas-bench expected pair={pair}`"
        )
    if root is not None:
        try:
            check_listed(path, Path(root), allow_unlisted)
        except tb.TableError as exc:
            raise tb.TableError(
                f"{exc}; or rerun `danas-bench expected pair={pair}` (it lists what it writes)"
            ) from None
    meta = tb.read_meta(path)
    if meta.get("kind") != "expected" or meta.get("pair") != pair:
        raise tb.TableError(f"{path}: not the expected table of {pair}")
    if meta.get("source_sha256") != tb.sha256(table_path):
        raise tb.TableError(
            f"{path}: fitted on another version of {Path(table_path).name}; rerun `danas-bench expected pair={pair}`"
        )
    if meta.get("none_source") is not None:  # the KD-gain estimates also depend on the `none` table
        none_path = Path(table_path).with_name(meta["none_source"])
        if not none_path.is_file() or tb.sha256(none_path) != meta.get("none_source_sha256"):
            raise tb.TableError(
                f"{path}: its KD-gain estimates were fitted on another version of "
                f"{meta['none_source']} (changed or missing); rerun "
                f"`danas-bench expected pair={pair}`"
            )
    t = tb.read(path)
    idx = t.column("arch_index").to_numpy()
    if len(idx) != space.N_ARCHS or not (idx == np.arange(space.N_ARCHS)).all():
        raise tb.TableError(f"{path}: does not hold every index 0..{space.N_ARCHS - 1} in order")
    return {m: t.column(m).to_numpy().astype(np.float64) for m in meta["metrics"]}


class ExpectedView:
    """``seed="expected"`` reads of one table: its expected file, loaded on first use (never trained or
    fitted live), as (numpy array, stdlib array) per metric for the vector and scalar paths."""

    def __init__(self, table_path: Path, pair: str, root: Path, allow_unlisted: bool):
        self.table_path, self.pair, self.root, self.allow_unlisted = table_path, pair, root, allow_unlisted
        self._arrays: dict | None = None

    def arrays(self, metric: str, epoch, test: bool, own_kd: bool) -> tuple:
        if epoch is not None:
            raise ValueError("seed='expected' estimates final metrics only; pass epoch=None")
        if not own_kd:
            raise ValueError(f"{self.pair}: seed='expected' covers the table's own KD setting only")
        if self._arrays is None:
            from danas_bench.query.store import pyarr

            loaded = load(self.table_path, self.pair, self.root, self.allow_unlisted)
            self._arrays = {m: (a, pyarr("d", a)) for m, a in loaded.items()}
        got = self._arrays.get(metric)
        if got is None or (not test and metric.startswith("test_")):
            shown = [m for m in self._arrays if test or not m.startswith("test_")]
            hint = " (test metrics through bench.test / test_many)" if metric in self._arrays else ""
            raise ValueError(
                f"{self.pair}: no expected {metric!r} for this call{hint}; expected metrics: {', '.join(shown)}"
            )
        return got


def expected_cost(cost: np.ndarray, idx) -> np.ndarray:
    """Simulated seconds of expected queries: the canonical architecture's recorded cost (seed mean),
    or the table's mean cost where the table lacks the architecture (deterministic either way)."""
    c = cost[space.canonical_table()[idx]]
    return np.where(np.isfinite(c), c, np.nanmean(cost))
