"""Where things live: the shipped tables folder and the user cache (both overridable by env vars)."""

from __future__ import annotations

import os
from pathlib import Path


def tables_dir() -> Path:
    """The shipped tables: ``$DANAS_TABLES`` or ``tables/`` beside the package."""
    env = os.environ.get("DANAS_TABLES")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "tables"


def cache_dir() -> Path:
    """The user cache (live overlay, generation scratch): ``$DANAS_CACHE`` or the platform cache dir."""
    env = os.environ.get("DANAS_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("danas-bench"))


def archs_file(dataset: str, recipe_id: str, root: Path | None = None) -> Path:
    """A dataset's architecture facts (params, FLOPs, latency) for one recipe's student:
    ``<tables>/<dataset>/archs-<recipe_id>.parquet``."""
    return (Path(root) if root is not None else tables_dir()) / dataset / f"archs-{recipe_id}.parquet"
