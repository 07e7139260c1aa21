"""Where things live: one owner for every on-disk name (package, configs, tables root, archs file,
shard folders, merged tables, MANIFEST, user cache). Roots are overridable by env vars."""

from __future__ import annotations

import os
from pathlib import Path

from danas_bench.core.pairs import Pair

PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONF_DIR = PACKAGE_DIR / "conf"


def tables_dir() -> Path:
    """The shipped tables: ``$DANAS_TABLES`` or ``tables/`` beside the package."""
    env = os.environ.get("DANAS_TABLES")
    return Path(env) if env else PACKAGE_DIR.parent / "tables"


def cache_dir() -> Path:
    """The user cache (live overlay, generation scratch): ``$DANAS_CACHE`` or the platform cache dir."""
    env = os.environ.get("DANAS_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("danas-bench"))


def _root(root) -> Path:
    return Path(root) if root is not None else tables_dir()


def archs_file(dataset: str, recipe_id: str, root: Path | None = None) -> Path:
    """A dataset's architecture facts (params, FLOPs, latency) for one recipe's student:
    ``<tables>/<dataset>/archs-<recipe_id>.parquet``."""
    return _root(root) / dataset / f"archs-{recipe_id}.parquet"


def table_path(pair: str, recipe_id: str, root: Path | None = None) -> Path:
    """A merged table: ``<tables>/<dataset>/<teacher>-<recipe_id>.parquet``."""
    p = Pair.parse(pair)
    return _root(root) / p.dataset / f"{p.teacher}-{recipe_id}.parquet"


def shard_dir(pair: str, recipe_id: str, root: Path | None = None) -> Path:
    """A generation's shards and plan: ``<tables>/shards/<dataset>__<teacher>/<recipe_id>/``."""
    return _root(root) / "shards" / Pair.parse(pair).slug / recipe_id


def shard_path(d: Path, sid: int) -> Path:
    return d / f"shard-{sid:05d}.parquet"


def manifest_path(root: Path | None = None) -> Path:
    """The tables' MANIFEST (JSON: every file's sha256, rows, recipe id)."""
    return _root(root) / "MANIFEST"
