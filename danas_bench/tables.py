"""Parquet schema, metadata and safe reading/writing of tables and shards.

One file per pair and recipe, long format, one row per (architecture, seed), curves as list columns.
File metadata (key ``danas_bench``) is a JSON object: schema version, pair, recipe and recipe_id, KD
setting, split hashes, teacher accuracy, code and torch versions, machine. Writes are atomic
(temporary file, fsync, rename, fsync of the folder), so a killed writer leaves either the old file
or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
META_KEY = b"danas_bench"

f32, i32, i16 = pa.float32(), pa.int32(), pa.int16()
RESULT_SCHEMA = pa.schema([
    ("arch_index", i32), ("arch", pa.string()), ("seed", i16), ("teacher", pa.string()),
    ("kd_temperature", f32), ("kd_alpha", f32), ("recipe_id", pa.string()), ("epochs", i16),
    ("train_loss", pa.list_(f32)), ("train_acc", pa.list_(f32)), ("valid_acc_curve", pa.list_(f32)),
    ("epoch_seconds", pa.list_(f32)),
    ("valid_acc", f32), ("valid_loss", f32), ("valid_ece", f32), ("valid_kl_teacher", f32),
    ("valid_agreement", f32),
    ("test_acc", f32), ("test_loss", f32), ("test_ece", f32), ("test_kl_teacher", f32),
    ("test_agreement", f32),
    ("train_seconds", f32), ("batch_size_models", i16), ("source", pa.string()),
])

ARCH_SCHEMA = pa.schema([
    ("arch_index", i32), ("arch", pa.string()), ("params", pa.int64()), ("flops", pa.int64()),
    ("latency_ms", f32), ("is_zero_cell", pa.bool_()),
])


class TableError(ValueError):
    """A table or shard is unreadable, foreign, incomplete or does not match the manifest."""


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host_cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


def git_revision() -> tuple[str | None, bool]:
    """(short commit, tracked files modified) of the checkout this code runs from; (None, False) outside git."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return None, False
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def code_revision() -> str:
    """The commit rows were made with ("<commit>", "<commit>+modified", or "unknown"): the package version
    alone does not tell apart engine revisions that change floating-point summation order."""
    rev, dirty = git_revision()
    return "unknown" if rev is None else rev + ("+modified" if dirty else "")


def versions() -> dict:
    import torch

    from . import __version__

    return {"code_version": __version__, "code_revision": code_revision(), "torch_version": torch.__version__,
            "schema_version": SCHEMA_VERSION}


def to_table(records: list[dict], meta: dict, schema: pa.Schema = RESULT_SCHEMA) -> pa.Table:
    rows = [{**r, "source": r.get("source", "table")} for r in records] if schema is RESULT_SCHEMA else records
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet to ``path`` atomically: temp file in the same folder, fsync, rename, fsync dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(path: Path) -> dict:
    """The file's danas_bench metadata; TableError if the file is not a readable danas-bench Parquet."""
    try:
        md = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises several types for torn files
        raise TableError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}); "
                         f"it is truncated or corrupt: delete it and regenerate") from exc
    if META_KEY not in md:
        raise TableError(f"{path}: Parquet file without danas-bench metadata (not written by danas-bench)")
    meta = json.loads(md[META_KEY])
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise TableError(f"{path}: schema version {meta.get('schema_version')} but this code reads "
                         f"{SCHEMA_VERSION}; upgrade danas-bench or regenerate the file")
    return meta


def read(path: Path, columns: list[str] | None = None) -> pa.Table:
    read_meta(path)
    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:
        raise TableError(f"{path}: Parquet data unreadable ({type(exc).__name__}: {exc}); "
                         f"it is truncated or corrupt: delete it and regenerate") from exc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pair_slug(pair: str) -> str:
    dataset, teacher = split_pair(pair)
    return f"{dataset}__{teacher}"


def split_pair(pair: str) -> tuple[str, str]:
    from .teachers import TEACHERS, check_pair

    if not isinstance(pair, str) or pair.count("/") != 1:
        valid = [f"{d}/{t}" for d, ts in TEACHERS.items() for t in ts + ("none",)]
        raise ValueError(f"pair must look like 'dataset/teacher', got {pair!r}; valid pairs: {', '.join(valid)}")
    dataset, teacher = pair.split("/")
    check_pair(dataset, teacher)
    return dataset, teacher
