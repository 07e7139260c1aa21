"""Shared fixtures: a throw-away tables folder with the shipped teachers, tiny recipes, CLI helpers.

Tests never write into the repository's ``tables/``: ``tables_root`` makes a fresh folder under
pytest's ``tmp_path``, copies ``tables/teachers`` into it (students read the teachers' cached logits
from there) and points ``$DANAS_TABLES`` and ``$DANAS_CACHE`` at temporary folders for the duration of
the test, so that library calls, in-process CLI calls and subprocesses all see the same root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import danas_bench

REPO = Path(danas_bench.__file__).resolve().parent.parent
SHIPPED_TEACHERS = REPO / "tables" / "teachers"

# The smallest recipe that still trains a real student: seconds per shard on one core.
TINY_RECIPE = {"width": 4, "epochs": 1, "batch_size": 32}
TINY_RECIPE_CLI = "recipe={width: 4, epochs: 1, batch_size: 32}"


def make_tables_root(path: Path, datasets: tuple[str, ...] | None = None) -> Path:
    """Create ``path`` as a tables folder holding a copy of the shipped teachers (all, or ``datasets``)."""
    path.mkdir(parents=True, exist_ok=True)
    if not SHIPPED_TEACHERS.is_dir():
        pytest.skip(f"no trained teachers at {SHIPPED_TEACHERS}; run `danas-bench teachers dataset=...` first")
    for src in sorted(SHIPPED_TEACHERS.iterdir()):
        if src.is_dir() and (datasets is None or src.name in datasets):
            shutil.copytree(src, path / "teachers" / src.name, dirs_exist_ok=True)
    return path


def danas_env(tables: Path, cache: Path) -> dict[str, str]:
    """The environment variables that point danas-bench at ``tables`` and ``cache``."""
    return {"DANAS_TABLES": str(tables), "DANAS_CACHE": str(cache)}


@pytest.fixture
def tables_root(tmp_path, monkeypatch) -> Path:
    """A temporary tables root with the teachers copied in; ``$DANAS_TABLES``/``$DANAS_CACHE`` set to it."""
    root = make_tables_root(tmp_path / "tables")
    cache = tmp_path / "cache"
    cache.mkdir()
    for key, value in danas_env(root, cache).items():
        monkeypatch.setenv(key, value)
    return root


@pytest.fixture
def tiny_recipe():
    """A factory of tiny recipes: ``tiny_recipe("digits")`` -> Recipe(width=4, epochs=1, batch_size=32)."""
    from danas_bench.core.recipe import Recipe

    def make(dataset: str = "digits", **overrides) -> Recipe:
        return Recipe(dataset=dataset, **{**TINY_RECIPE, **overrides})

    return make


def cli_cmd(*args: str) -> list[str]:
    """The argv that runs ``danas-bench <args>`` with this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "danas_bench.cli", *args]


def run_cli(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``danas-bench <args>`` in a subprocess with the current environment; capture its output."""
    res = subprocess.run(cli_cmd(*args), capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    if check and res.returncode != 0:
        raise AssertionError(f"danas-bench {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture
def danas_cli():
    """``danas_cli("verify")`` runs the CLI in a subprocess (see ``run_cli``)."""
    return run_cli
