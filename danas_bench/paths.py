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
