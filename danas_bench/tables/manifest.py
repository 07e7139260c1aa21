"""The MANIFEST: the tables' index of checksums. Listing a file (``update_manifest``), checking one
before it is read (``check_listed``) and re-checking them all (``verify``) live here, so that every
reader and writer agrees on one format: ``{"manifest_version": 1, "files": {relative path: entry}}``
with each entry's kind, sha256, bytes, rows and recipe id."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.paths import manifest_path, shard_dir, tables_dir
from danas_bench.core.schema import TableError, sha256
from danas_bench.tables.plan import Plan, check_coverage


def load_manifest(root: Path | None = None) -> dict:
    """``root``'s MANIFEST ({"files": {relative path: entry}}); an empty one when there is none.
    TableError in one line when it is not valid JSON or an entry lacks its sha256."""
    p = manifest_path(root)
    if not p.exists():
        return {"manifest_version": 1, "files": {}}
    try:
        man = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TableError(
            f"{p}: not valid JSON ({exc}); restore it from git (`git checkout -- {p}`) "
            f"or rebuild it with `danas-bench merge`"
        ) from None
    files = man.get("files") if isinstance(man, dict) else None
    if not isinstance(files, dict):
        raise TableError(f'{p}: malformed, it has no "files" object; restore it from git')
    for rel, entry in files.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or len(sha) != 64:
            raise TableError(f"{p}: entry {rel!r} has no valid sha256; restore the MANIFEST from git")
    return man


def manifest_rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as the MANIFEST writes it; TableError when it lies outside."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        raise TableError(f"{path} lies outside the tables root {root}") from None


def check_listed(path: Path, root: Path, allow_unlisted: bool = False) -> dict | None:
    """Check ``path`` against ``root``'s MANIFEST before it is loaded: its sha256 and size must match
    the entry. An unlisted file is refused unless ``allow_unlisted`` (the user's own tables); return
    the entry (None when unlisted and allowed)."""
    rel = manifest_rel(path, root)
    entry = load_manifest(root)["files"].get(rel)
    if entry is None:
        if allow_unlisted:
            return None
        raise TableError(
            f"{path} is not listed in {manifest_path(root)}, so its integrity cannot be checked; "
            f"tables made by `danas-bench generate`/`merge` are listed; for a file of your own pass "
            f"allow_unlisted=True (CLI: allow_unlisted=true)"
        )
    digest = sha256(path)
    if digest != entry["sha256"]:
        size = Path(path).stat().st_size
        sizes = f"{size} bytes, MANIFEST {entry.get('bytes')}" if size != entry.get("bytes") else f"same size {size}"
        raise TableError(
            f"{path}: sha256 {digest[:12]}... differs from the MANIFEST's {entry['sha256'][:12]}... "
            f"({sizes}): the file is damaged or was changed; restore it from git or regenerate it, "
            f"and run `danas-bench verify`"
        )
    return entry


def update_manifest(path: Path, root: Path | None = None, kind: str = "table", extra: dict | None = None) -> None:
    from filelock import FileLock

    root = root or tables_dir()
    rel = manifest_rel(path, root)
    entry = {
        "kind": kind,
        "sha256": tb.sha256(path),
        "bytes": Path(path).stat().st_size,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        entry["rows"] = pq.ParquetFile(path).metadata.num_rows
        meta = tb.read_meta(path)
        entry["recipe_id"] = meta.get("recipe_id")
    entry.update(extra or {})
    # read-modify-write under a lock: two merges of different pairs must not drop each other's entry
    with FileLock(str(root / ".MANIFEST.lock")):
        man = load_manifest(root)
        man["files"][rel] = entry
        tmp = manifest_path(root).with_suffix(f".tmp-{os.getpid()}")
        with open(tmp, "w") as f:
            f.write(json.dumps(man, indent=1, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, manifest_path(root))


def register_teachers(dataset: str, root: Path | None = None) -> list[Path]:
    """Add a dataset's teacher weights and cached logits to the MANIFEST (students read the logits, so
    a changed logit changes every KD row trained later; `verify` checks them like the tables)."""
    root = root or tables_dir()
    files = sorted((root / "teachers" / dataset).glob("*.safetensors"))
    for f in files:
        teacher = f.name.split(".")[0]
        kind = "teacher-logits" if f.name.endswith(".logits.safetensors") else "teacher-weights"
        update_manifest(f, root, kind=kind, extra={"dataset": dataset, "teacher": teacher})
    return files


def unlisted(root: Path | None = None, man: dict | None = None) -> list[str]:
    """Tables, architecture files and teacher files under ``root`` that the MANIFEST does not list."""
    root = root or tables_dir()
    listed = set((man or load_manifest(root))["files"])
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []:
        if d.name == "shards":
            continue
        pattern = "*/*.safetensors" if d.name == "teachers" else "*.parquet"
        found += [str(f.relative_to(root)) for f in sorted(d.glob(pattern)) if not f.name.startswith(".")]
    return [rel for rel in found if rel not in listed]


def verify(root: Path | None = None, log=print) -> list[str]:
    """Re-check every file of the manifest; return the problems (empty when all is well). Files under
    ``root`` that it does not list (tables, teacher weights and logits) are logged as UNLISTED."""
    root = root or tables_dir()
    try:
        man = load_manifest(root)
    except tb.TableError as exc:
        log(f"FAIL {exc}")
        return [str(exc)]
    problems = []
    if not man["files"]:
        problems.append(f"{manifest_path(root)}: no files listed")
    for rel, entry in sorted(man["files"].items()):
        p = root / rel
        if Path(rel).is_absolute() or not p.resolve().is_relative_to(root.resolve()):
            problems.append(f"{rel}: MANIFEST path lies outside the tables root {root}; not read (fix the entry)")
            continue
        if not p.exists():
            problems.append(f"{rel}: listed in MANIFEST but missing")
            continue
        digest = tb.sha256(p)
        if digest != entry["sha256"]:
            problems.append(
                f"{rel}: sha256 {digest[:12]}... does not match MANIFEST {entry['sha256'][:12]}...; "
                f"the file changed after it was recorded: restore it from git or regenerate"
            )
            continue
        if p.suffix != ".parquet":
            continue
        try:
            table = tb.read(p)
            meta = tb.read_meta(p)
            for name in ("arch_index", "seed", *tb.UNIT_RANGE, *tb.NON_NEGATIVE):
                if name in table.column_names:
                    col = table.column(name)
                    if pa.types.is_list(col.type):
                        col = pc.list_flatten(col)
                    tb.check_values(name, col.to_numpy(zero_copy_only=False).astype(float), rel)
        except tb.TableError as exc:
            problems.append(str(exc))
            continue
        if table.num_rows != entry.get("rows"):
            problems.append(f"{rel}: {table.num_rows} rows, MANIFEST says {entry.get('rows')}")
        if meta.get("recipe_id") != entry.get("recipe_id"):
            problems.append(f"{rel}: recipe_id {meta.get('recipe_id')} differs from MANIFEST {entry.get('recipe_id')}")
        if entry.get("kind") == "expected":  # estimates fitted on an older table are stale
            for key in ("source", "none_source"):  # the table itself, and `none` for the KD-gain estimates
                if not meta.get(key):  # a `none` pair's estimates have no none_source
                    continue
                src = p.with_name(str(meta.get(key)))
                if not src.is_file() or tb.sha256(src) != meta.get(f"{key}_sha256"):
                    problems.append(
                        f"{rel}: fitted on another version of {meta.get(key)}; rerun "
                        f"`danas-bench expected pair={entry.get('pair')}`"
                    )
        if entry.get("kind") == "table":
            ids = set(table.column("recipe_id").unique().to_pylist())
            if ids != {meta.get("recipe_id")}:
                problems.append(f"{rel}: rows carry recipe ids {sorted(ids)}, file says {meta.get('recipe_id')}")
            plan_file = shard_dir(entry["pair"], entry["recipe_id"], root) / "plan.json"
            if plan_file.exists():
                try:
                    plan = Plan.from_json(plan_file.read_text())
                    rows = plan.rows()
                    if entry.get("partial"):  # the finished shards the table was merged from
                        ids = set(meta.get("shards", []))
                        rows = {(a, s["seed"]) for s in plan.shards if s["id"] in ids for a in s["archs"]}
                    check_coverage(table, rows, rel)
                except tb.TableError as exc:
                    problems.append(str(exc))
            elif not entry.get("sampled") and not entry.get("partial"):
                canon = set(int(a) for a in space.canonical_indices())
                got = set(table.filter(pc.equal(table.column("seed"), 0)).column("arch_index").to_pylist())
                if got != canon:
                    problems.append(f"{rel}: seed 0 covers {len(got)} of {len(canon)} canonical architectures")
    for msg in problems:
        log(f"FAIL {msg}")
    for rel in unlisted(root, man):  # not failures: open() refuses them unless the user opts in
        hint = (
            f"`danas-bench verify register_teachers=[{rel.split('/')[1]}]`"
            if rel.startswith("teachers/")
            else "`danas-bench merge`"
        )
        log(f"UNLISTED {rel}: not in MANIFEST, so nothing vouches for it; list it with {hint} or delete it")
    if not problems:
        log(f"OK: {len(man['files'])} files in {manifest_path(root)} verified")
    return problems
