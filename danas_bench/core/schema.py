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
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from danas_bench.core.paths import PACKAGE_DIR

SCHEMA_VERSION = 1
META_KEY = b"danas_bench"

f32, i32, i16 = pa.float32(), pa.int32(), pa.int16()
RESULT_SCHEMA = pa.schema(
    [
        ("arch_index", i32),
        ("arch", pa.string()),
        ("seed", i16),
        ("teacher", pa.string()),
        ("kd_temperature", f32),
        ("kd_alpha", f32),
        ("recipe_id", pa.string()),
        ("epochs", i16),
        ("train_loss", pa.list_(f32)),
        ("train_acc", pa.list_(f32)),
        ("valid_acc_curve", pa.list_(f32)),
        ("epoch_seconds", pa.list_(f32)),
        ("valid_acc", f32),
        ("valid_loss", f32),
        ("valid_ece", f32),
        ("valid_kl_teacher", f32),
        ("valid_agreement", f32),
        ("test_acc", f32),
        ("test_loss", f32),
        ("test_ece", f32),
        ("test_kl_teacher", f32),
        ("test_agreement", f32),
        ("train_seconds", f32),
        ("batch_size_models", i16),
        ("source", pa.string()),
    ]
)

ARCH_SCHEMA = pa.schema(
    [
        ("arch_index", i32),
        ("arch", pa.string()),
        ("params", pa.int64()),
        ("flops", pa.int64()),
        ("latency_ms", f32),
        ("is_zero_cell", pa.bool_()),
    ]
)


SEED_MAX = 32767  # seeds are stored as int16
# value ranges checked when a column is loaded: a damaged file must fail loudly, not answer wrongly
UNIT_RANGE = (
    "valid_acc",
    "test_acc",
    "train_acc",
    "valid_acc_curve",
    "valid_ece",
    "test_ece",
    "valid_agreement",
    "test_agreement",
)
NON_NEGATIVE = (
    "train_loss",
    "valid_loss",
    "test_loss",
    "valid_kl_teacher",
    "test_kl_teacher",
    "train_seconds",
    "epoch_seconds",
)
# columns every row must hold (the others are null where they do not apply, e.g. KL on a `none` pair)
REQUIRED = (
    "valid_acc",
    "test_acc",
    "train_acc",
    "valid_acc_curve",
    "train_loss",
    "valid_loss",
    "test_loss",
    "train_seconds",
    "epoch_seconds",
)


class TableError(ValueError):
    """A table or shard is unreadable, foreign, incomplete or does not match the manifest."""


def check_values(name: str, values, where) -> None:
    """Refuse a loaded column whose values cannot be right (TableError naming file, column and value).

    ``values``: a numpy array of the column (nulls as nan). Accuracies lie in [0, 1], losses, KL and
    seconds are finite and >= 0, required columns hold no nan, indices lie in the space, seeds in int16.
    """
    import numpy as np

    v = np.asarray(values)
    if v.size == 0:
        return
    if name == "arch_index":
        bad = (v < 0) | (v >= 15625)
        rule = "an architecture index in [0, 15624]"
    elif name == "seed":
        bad = (v < 0) | (v > SEED_MAX)
        rule = f"a seed in [0, {SEED_MAX}]"
    elif name in UNIT_RANGE or name in NON_NEGATIVE:
        with np.errstate(invalid="ignore"):
            bad = ~np.isnan(v) & ((v < 0) | ~np.isfinite(v) | ((v > 1) if name in UNIT_RANGE else False))
        if name in REQUIRED:
            bad |= np.isnan(v)
        rule = "a number in [0, 1]" if name in UNIT_RANGE else "a finite number >= 0"
    else:
        return
    if bad.any():
        first = v[bad].flat[0].item()
        raise TableError(
            f"{where}: column {name} holds {int(bad.sum())} impossible values (e.g. {first!r}; each must be "
            f"{rule}); the file is damaged: restore it from git or regenerate it"
        )


def temp_path(path: Path) -> Path:
    """The temporary name a writer of ``path`` uses: it names the writer's host and pid, so that a
    restart can tell a live writer's temp file from a dead one's (:func:`stale_temp`)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


STALE_TEMP_S = 3600.0  # a temp file of another host older than this is a dead writer's (writes take seconds)


def stale_temp(tmp: Path, now: float | None = None) -> bool:
    """Whether a writer's temp file is left over: its writer (this host, its pid) is gone, or it is
    another host's and older than ``STALE_TEMP_S``."""
    tail = tmp.name.rsplit(".tmp-", 1)[-1]
    host, _, pid = tail.rpartition("-")
    if not host and pid.isdigit():  # a bare ".tmp-<pid>" name carries no host: taken as this host's
        host = socket.gethostname()
    try:
        age = (time.time() if now is None else now) - tmp.stat().st_mtime
    except FileNotFoundError:
        return False
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return True  # our own: nothing of ours is in flight while we look
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
        return False  # alive (or a reused pid: the file goes once it is old, on another restart)
    return age > STALE_TEMP_S


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

    repo = PACKAGE_DIR.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return None, False
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def code_revision() -> str:
    """The commit rows were made with ("<commit>", "<commit>+modified", or "unknown"): the package version
    alone does not tell apart engine revisions that change floating-point summation order. A copy of the
    code on another machine (a node's scratch copy, scripts/burst_shards.py) says which commit it holds in
    ``$DANAS_CODE_REVISION``, which wins over git: a ``.git`` copied with the files may be older than they are."""
    env = os.environ.get("DANAS_CODE_REVISION")
    if env:
        return env
    rev, dirty = git_revision()
    return "unknown" if rev is None else rev + ("+modified" if dirty else "")


def versions() -> dict:
    import torch

    from danas_bench import __version__

    return {
        "code_version": __version__,
        "code_revision": code_revision(),
        "torch_version": torch.__version__,
        "schema_version": SCHEMA_VERSION,
    }


def to_table(records: list[dict], meta: dict, schema: pa.Schema = RESULT_SCHEMA) -> pa.Table:
    rows = [{**r, "source": r.get("source", "table")} for r in records] if schema is RESULT_SCHEMA else records
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet to ``path`` atomically: temp file in the same folder, fsync, rename, fsync dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            # page checksums: a flipped bit in a data page is a read error, not a different value
            pq.write_table(table, f, compression="zstd", write_page_checksum=True)
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
        raise TableError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}); "
            f"it is truncated or corrupt: delete it and regenerate"
        ) from exc
    if META_KEY not in md:
        raise TableError(f"{path}: Parquet file without danas-bench metadata (not written by danas-bench)")
    meta = json.loads(md[META_KEY])
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise TableError(
            f"{path}: schema version {meta.get('schema_version')} but this code reads "
            f"{SCHEMA_VERSION}; upgrade danas-bench or regenerate the file"
        )
    return meta


def read(path: Path, columns: list[str] | None = None) -> pa.Table:
    read_meta(path)
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except Exception as exc:
        raise TableError(
            f"{path}: Parquet data unreadable ({type(exc).__name__}: {exc}); "
            f"it is truncated or corrupt: delete it and regenerate"
        ) from exc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- the MANIFEST ------------------------------------------------------------------------------------
