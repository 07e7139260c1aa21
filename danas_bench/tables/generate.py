"""Table generation: plan shards, run them as submitit tasks, resume, merge, verify.

A *plan* fixes, for one pair and recipe, which (architecture, seed) rows the table holds and how they
are cut into shards; it is written once as ``plan.json`` next to the shards and every restart must
agree with it. One shard is one submitit task that writes one Parquet file atomically. A restart skips
shards that exist and validate (right pair, recipe, shard id and rows), so a killed, preempted or
timed-out run loses at most the shards in flight and never duplicates a row.

Layout::

    tables/shards/<dataset>__<teacher>/<recipe_id>/plan.json
    tables/shards/<dataset>__<teacher>/<recipe_id>/shard-00042.parquet
    tables/<dataset>/<teacher>-<recipe_id>.parquet          (merged)
    tables/MANIFEST                                          (JSON: file, rows, sha256, recipe_id, ...)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from danas_bench.core import schema as tb
from danas_bench.core.pairs import split_pair
from danas_bench.core.paths import shard_path, table_path
from danas_bench.core.recipe import KD, Recipe
from danas_bench.tables.manifest import update_manifest
from danas_bench.tables.plan import Plan, check_coverage


def shard_meta(plan: Plan, shard: dict | None) -> dict:
    from danas_bench.training import data as data_mod
    from danas_bench.training import teachers

    dataset, teacher = split_pair(plan.pair)
    meta = {
        "pair": plan.pair,
        "dataset": dataset,
        "teacher": teacher,
        "recipe": plan.recipe,
        "recipe_id": plan.recipe_id,
        "kd": plan.kd,
        "split_hashes": data_mod.load(dataset).split_hashes,
        "machine": tb.machine(),
        **tb.versions(),
    }
    if teacher != "none":
        meta["teacher_accuracy"] = teachers.info(dataset, teacher)["accuracy"]
    if shard is not None:
        meta["shard"] = shard["id"]
    return meta


def check_shard(path: Path, plan: Plan, shard: dict) -> pa.Table:
    """Read a shard and check it is the planned one; TableError naming the fault otherwise."""
    meta = tb.read_meta(path)
    if meta.get("recipe_id") != plan.recipe_id:
        raise tb.TableError(
            f"{path}: recipe_id {meta.get('recipe_id')} is foreign to this plan "
            f"({plan.recipe_id}); it was made with another recipe: remove it"
        )
    if meta.get("pair") != plan.pair or meta.get("shard") != shard["id"]:
        raise tb.TableError(
            f"{path}: holds pair {meta.get('pair')} shard {meta.get('shard')}, expected {plan.pair} shard {shard['id']}"
        )
    table = tb.read(path)
    archs = table.column("arch_index").to_pylist()
    seeds = set(table.column("seed").to_pylist())
    if sorted(archs) != sorted(shard["archs"]) or seeds != {shard["seed"]}:
        raise tb.TableError(
            f"{path}: rows do not match the plan ({len(archs)} rows, seeds {sorted(seeds)}; "
            f"expected {len(shard['archs'])} rows of seed {shard['seed']})"
        )
    return table


def shard_done(path: Path, plan: Plan, shard: dict) -> bool:
    if not path.exists():
        return False
    try:
        check_shard(path, plan, shard)
        return True
    except tb.TableError:
        return False


def auto_chunk(recipe) -> int:
    """Students fused per engine call when ``chunk=auto``: 128 for mnist1d at width 8 and up (the one case
    measured: 1.10x over 64, docs/performance.md), else 64 (memory grows with chunk: images stay at 64).
    The chunk is part of a run's arithmetic: fused students share summation orders, so a student trained in
    another chunk differs in its last bits, which training grows to a different run (docs/generation.md,
    "Reproducing a row"); rows record theirs in ``batch_size_models``."""
    return 128 if recipe.dataset == "mnist1d" and recipe.width >= 8 else 64


def run_shard(d: str, plan_json: str, sid: int, chunk: int = 16, device: str = "cpu") -> str:
    """One submitit task: train one shard with the engine (on ``device``: cpu, or cuda on a GPU node)
    and write it atomically."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from danas_bench.training.engine import Task, train_many

    torch.set_num_threads(1)
    plan = Plan.from_json(plan_json)
    shard = next(s for s in plan.shards if s["id"] == sid)
    path = shard_path(Path(d), sid)
    if shard_done(path, plan, shard):
        return str(path)
    archs = shard["archs"]
    tell = bool(os.environ.get("SUBMITIT_EXECUTOR"))  # a submitit task: say what it does, in its log
    if tell:
        print(f"shard {sid}: {plan.pair}, seed {shard['seed']}, {len(archs)} architectures -> {path}", flush=True)
    t0 = time.perf_counter()
    task = Task.make(Recipe.from_dict(plan.recipe), KD(**plan.kd), device)
    records = []
    for i in range(0, len(archs), chunk):
        records += train_many(archs[i : i + chunk], shard["seed"], task)
    tb.write_atomic(tb.to_table(records, shard_meta(plan, shard)), path)
    if tell:
        print(f"shard {sid}: written in {time.perf_counter() - t0:.0f} s", flush=True)
    return str(path)


def run_shards(d: str, plan_json: str, sids: list[int], chunk: int = 16, device: str = "cpu") -> list[str]:
    """One submitit task that trains several shards one after the other (``shards_per_task`` > 1):
    on a GPU node the data, teacher logits and CUDA context are set up once per task instead of once
    per shard, and a site's per-job overhead (scheduling, start-up) is paid once."""
    return [run_shard(d, plan_json, sid, chunk, device) for sid in sids]


# --- executors --------------------------------------------------------------------------------


def _progress(total: int, done0: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=done0, unit="shard", desc="generate", smoothing=0.1)


def _only_seeds(only_seeds, plan: Plan) -> set[int]:
    """``only_seeds`` (a list or one int) as a set of the plan's seeds; ValueError for an empty list or a
    seed the plan does not have (a typo would otherwise read as "nothing to run" and end a phase early)."""
    seeds = {int(x) for x in ([only_seeds] if isinstance(only_seeds, int) else only_seeds)}
    have = sorted({int(s["seed"]) for s in plan.shards})
    if not seeds or not seeds <= set(have):
        raise ValueError(f"only_seeds={sorted(seeds)}: give one or more of the plan's seeds {have}, or leave it null")
    return seeds


def run_pending(
    plan: Plan,
    d: Path,
    executor: str = "local",
    workers: int | None = None,
    chunk: int = 16,
    slurm: dict | None = None,
    log=print,
    max_shards: int | None = None,
    device: str = "cpu",
    only_seeds: list[int] | None = None,
) -> list[int]:
    """Run every shard that is not done yet (at most ``max_shards`` of them, lowest ids first: a round of
    a round-robin over pairs; only those of ``only_seeds`` when given, e.g. seeds 0 and 1 of every pair
    before seed 2); return the ids that ran."""
    if executor not in ("debug", "local", "slurm"):
        raise ValueError(f"unknown executor {executor!r}; choose local, slurm or debug")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    for tmp in d.glob(".shard-*.tmp-*"):  # torn temp files of killed writers; never a live writer's
        if tb.stale_temp(tmp):
            tmp.unlink(missing_ok=True)
    todo = [s for s in plan.shards if not shard_done(shard_path(d, s["id"]), plan, s)]
    done0 = len(plan.shards) - len(todo)
    seeds = None if only_seeds is None else _only_seeds(only_seeds, plan)
    pending = [s["id"] for s in todo if seeds is None or s["seed"] in seeds]
    log(
        f"{plan.pair} recipe {plan.recipe_id}: {len(plan.shards)} shards, {done0} done, {len(pending)} to run "
        f"({executor}{'' if seeds is None else f'; seeds {sorted(seeds)} only'})"
    )
    if max_shards is not None:
        pending = pending[: max(0, int(max_shards))]
    if not pending:
        return []
    pj = plan.to_json()
    bar = _progress(len(plan.shards), done0)
    try:
        if executor == "debug":
            for sid in pending:
                run_shard(str(d), pj, sid, chunk, device)
                bar.update()
        elif executor == "local":
            _run_local(d, pj, pending, workers, chunk, bar, device)
        elif executor == "slurm":
            _run_slurm(d, pj, pending, chunk, slurm or {}, bar, log, device)
        else:
            raise ValueError(f"unknown executor {executor!r}; choose local, slurm or debug")
    finally:
        bar.close()
    return pending


@contextlib.contextmanager
def _sigterm_unwinds():
    """A plain ``kill`` (SIGTERM) of this process unwinds like Ctrl-C instead of ending it on the spot, so
    that the ``finally`` below cancels the local tasks in flight: submitit's local controllers are made
    to outlive the process that started them and would otherwise train on, detached, for minutes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_local(d: Path, pj: str, pending: list[int], workers: int | None, chunk: int, bar, device: str = "cpu") -> None:
    """submitit's local executor, at most one task per core in flight (each task single-threaded)."""
    import submitit

    from danas_bench.training.workers import n_workers

    ex = submitit.AutoExecutor(folder=d / "logs", cluster="local")
    ex.update_parameters(timeout_min=24 * 60)
    todo, running = list(pending), []
    w = n_workers(workers)
    with _sigterm_unwinds():
        try:
            while todo or running:
                while todo and len(running) < w:
                    running.append(ex.submit(run_shard, str(d), pj, todo.pop(0), chunk, device))
                time.sleep(0.5)
                for job in [j for j in running if j.done()]:
                    running.remove(job)
                    job.result()  # re-raises a failed shard's error
                    bar.update()
        finally:
            # a failed shard, an interrupt or a SIGTERM: stop the tasks still in flight instead of leaving
            # them running, detached, after this command has exited (their shards are redone on resume)
            for job in running:
                job.cancel(check=False)


def _run_slurm(d: Path, pj: str, pending: list[int], chunk: int, slurm: dict, bar, log, device: str = "cpu") -> None:
    """SLURM array jobs, one array task per ``executor.shards_per_task`` pending shards (default 1; several
    arrays if SLURM's MaxArraySize is hit)."""
    import submitit

    plan = Plan.from_json(pj)
    ex = submitit.AutoExecutor(folder=d / "logs" / "%j", cluster="slurm")
    from danas_bench.tables.cluster import array_limits, slurm_params  # the same parameters the dry run renders

    ex.update_parameters(**slurm_params(slurm, plan.pair))
    size, per_task = array_limits(slurm)  # the limits the dry run checks too
    packs = [pending[i : i + per_task] for i in range(0, len(pending), per_task)]
    jobs, shard_of, array_ids = [], {}, []
    for i in range(0, len(packs), size):
        part = packs[i : i + size]
        n = len(part)
        if per_task == 1:
            new = ex.map_array(run_shard, [str(d)] * n, [pj] * n, [p[0] for p in part], [chunk] * n, [device] * n)
        else:
            new = ex.map_array(run_shards, [str(d)] * n, [pj] * n, part, [chunk] * n, [device] * n)
        array_ids.append(new[0].job_id.split("_")[0])
        # submitit submits a single task as a plain job (job id "<id>", logs/<id>/), not an array
        what, logs = (
            ("array job", f"{d / 'logs' / array_ids[-1]}_<task>") if n > 1 else ("job", d / "logs" / array_ids[-1])
        )
        log(
            f"submitted SLURM {what} {array_ids[-1]} with {n} task{'s' if n > 1 else ''} "
            f"(shards {part[0][0]}..{part[-1][-1]}{f', {per_task} per task' if per_task > 1 else ''}); "
            f"logs in {logs}"
        )
        jobs += new
        shard_of.update(zip((j.job_id for j in new), part))
    try:
        _wait_slurm(
            jobs,
            shard_of,
            array_ids,
            d,
            plan,
            bar,
            poll_s=float(slurm.get("poll_s", _SQUEUE_EVERY_S)),
            grace_s=float(slurm.get("result_grace_s", _RESULT_GRACE_S)),
        )
    except KeyboardInterrupt:
        # the tasks belong to SLURM, not to this process: say so instead of leaving them unnoticed
        log(
            f"\nstopped waiting; SLURM job(s) {','.join(array_ids)} keep running (`squeue -j "
            f"{','.join(array_ids)}`; `scancel {' '.join(array_ids)}` stops them). Once they have left the "
            f"queue, rerun the same command: it keeps their shards, runs what is missing and merges."
        )
        raise


# SLURM states in which an array task may still write its result
_SLURM_ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
    "RESIZING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESV_DEL_HOLD",
}
_SQUEUE_EVERY_S = 15.0  # one squeue call for all the arrays, not one per task (executor.poll_s)
# a task that left the queue gets this long for its result to show, shared-FS lag (executor.result_grace_s)
_RESULT_GRACE_S = 30.0


def _squeue_states(array_ids: list[str]) -> dict[str, str] | None:
    """``{"<array>_<task>": state}`` from squeue; None when squeue cannot answer.

    submitit learns task states from ``sacct``, which needs SLURM's accounting database: without one
    (``accounting_storage/none``, the test cluster, some small sites) a task cancelled or killed before
    it wrote its result stays "UNKNOWN" forever and the wait never ends. squeue works everywhere; a
    task it no longer lists (slurmctld forgets finished jobs after MinJobAge, and a cancelled pending
    array task at once) has left the queue.
    """
    import subprocess

    states: dict[str, str] = {}
    for array_id in array_ids:  # one call per array: squeue rejects a whole list if one id is unknown
        try:
            r = subprocess.run(
                ["squeue", "-h", "-r", "-t", "all", "-j", array_id, "-o", "%i|%T"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if r.returncode != 0:
            if "invalid job id" in r.stderr.lower():
                continue  # slurmctld forgot the whole array: every task has left the queue
            return None
        states.update(line.split("|", 1) for line in r.stdout.split() if "|" in line)
    return states


def _which(sids: list[int]) -> str:
    """'shard 3' or 'shards 3, 4' (empty when none)."""
    return "" if not sids else f"shard {sids[0]}" if len(sids) == 1 else f"shards {', '.join(map(str, sids))}"


def _wait_slurm(
    jobs: list,
    shard_of: dict[str, list[int]],
    array_ids: list[str],
    d: Path,
    plan: Plan,
    bar,
    poll_s: float = _SQUEUE_EVERY_S,
    grace_s: float = _RESULT_GRACE_S,
) -> None:
    """Wait for every array task; raise listing the tasks that ended without finishing their shard."""
    shards = {s["id"]: s for s in plan.shards}
    waiting, errors, gone_since = list(jobs), [], {}
    states, last_poll = None, float("-inf")
    while waiting:
        time.sleep(min(2.0, poll_s))
        now = time.time()
        if now - last_poll >= poll_s:
            states, last_poll = _squeue_states(array_ids), now
        for job in list(waiting):
            sids = shard_of[job.job_id]
            missing = lambda sids=sids: _which([s for s in sids if not shard_done(shard_path(d, s), plan, shards[s])])  # noqa: E731
            # job.done() asks sacct: only when squeue cannot answer (without accounting sacct only
            # prints warnings and never learns that a task was cancelled)
            if job.paths.result_pickle.exists() or (states is None and job.done()):
                waiting.remove(job)
                try:
                    job.result()  # re-raises the task's exception, if any
                except Exception as exc:  # a cancelled or failed task: report, keep the rest
                    if lost := missing():
                        errors.append(
                            f"task {job.job_id} ({lost}): {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                        )
                bar.update(len(sids))
                continue
            state = None if states is None else states.get(job.job_id)
            if states is None or state in _SLURM_ACTIVE:
                gone_since.pop(job.job_id, None)
                continue
            # squeue says the task ended (or forgot it) but no result is there yet
            if now - gone_since.setdefault(job.job_id, now) < grace_s:
                continue
            waiting.remove(job)
            if lost := missing():
                errors.append(
                    f"task {job.job_id} ({lost}): {state or 'left the queue'} without a result "
                    f"(cancelled, timed out, out of memory or killed); log: {job.paths.stderr}"
                )
            bar.update(len(sids))
    if errors:
        raise RuntimeError(
            f"{len(errors)} SLURM tasks did not finish (rerun the same command to resume):\n" + "\n".join(errors[:10])
        )


# --- merge, manifest, verify --------------------------------------------------------------------


def _shard_counts(parts: list[pa.Table]) -> dict[str, dict[str, int]]:
    """Shards per code revision, per CPU model and per torch version ("unrecorded": written before shards
    carried it): a table's training seconds compare across architectures only where the machines agree,
    and its accuracies are bit-reproducible only under the same code and torch, so the datasheet shows
    where and with what they were measured."""
    metas = [json.loads(t.schema.metadata[tb.META_KEY]) for t in parts]
    revs = [m.get("code_revision", "unrecorded") for m in metas]
    cpus = [(m.get("machine") or {}).get("host_cpu", "unrecorded") for m in metas]
    torches = [m.get("torch_version", "unrecorded") for m in metas]
    return {
        "shard_code_revisions": {r: revs.count(r) for r in sorted(set(revs))},
        "shard_machines": {c: cpus.count(c) for c in sorted(set(cpus))},
        "shard_torch_versions": {v: torches.count(v) for v in sorted(set(torches))},
    }


def _shards_digest(d: Path, done: list[dict]) -> str:
    """One sha256 over the finished shards' own digests, in id order: what a merged table was made of."""
    parts = "".join(tb.sha256(shard_path(d, s["id"])) for s in sorted(done, key=lambda s: s["id"]))
    return hashlib.sha256(parts.encode()).hexdigest()


def _holds(out: Path, root: Path | None, digest: str) -> bool:
    """Is ``out`` an intact merge (its MANIFEST checksum holds) of exactly the shards ``digest`` names?"""
    from danas_bench.core.paths import tables_dir
    from danas_bench.tables.manifest import check_listed

    if not out.exists():
        return False
    try:
        check_listed(out, root or tables_dir())
        return tb.read_meta(out).get("shards_sha256") == digest
    except (tb.TableError, OSError):
        return False  # unlisted, damaged or unreadable: merge again


def live_cells(plan: Plan) -> int:
    """The non-zero cells among the plan's architectures: what "every cell has two seeds" counts against
    (the whole live space in tier S, the sample's live part in tier M; recorded in the MANIFEST)."""
    from danas_bench.core import space

    return int((~space.zero_cells(sorted({a for a, _ in plan.rows()}))).sum())


def merge(plan: Plan, d: Path, root: Path | None = None, log=print, partial: bool = False) -> Path:
    """Concatenate the shards, check coverage and uniqueness, write the table and the manifest.

    ``partial=True`` merges the shards finished so far into a table marked ``partial`` (with the share
    of planned rows it covers): shards hold seeded permutations of the space, so it is a uniform sample.
    """
    parts, done, missing = [], [], []
    for s in plan.shards:
        p = shard_path(d, s["id"])
        if not p.exists():
            missing.append(s["id"])
            continue
        parts.append(check_shard(p, plan, s))  # raises on a torn or foreign shard
        done.append(s)
    if missing and not (partial and parts):
        raise tb.TableError(
            f"cannot merge {plan.pair}: {len(missing)} of {len(plan.shards)} shards missing "
            f"(first: {shard_path(d, missing[0])}); rerun generate to finish them"
            + ("" if partial else ", or merge partial=true for a table of the finished ones")
        )
    partial = bool(missing)
    out = table_path(plan.pair, plan.recipe_id, root)
    digest = _shards_digest(d, done)
    if _holds(out, root, digest):  # rewriting it would only change its date and stale its expected file
        log(f"{plan.pair}: {out} already holds these {len(done)} of {len(plan.shards)} shards; nothing to merge")
        return out
    table = pa.concat_tables(parts)
    expected = {(a, s["seed"]) for s in done for a in s["archs"]}
    check_coverage(table, expected if partial else plan.rows(), plan.pair)
    order = pc.sort_indices(table, [("seed", "ascending"), ("arch_index", "ascending")])
    table = table.take(order)
    meta = shard_meta(plan, None)
    coverage = round(table.num_rows / len(plan.rows()), 4)
    meta.update(
        {
            "sampled": plan.sampled,
            "partial": partial,
            "coverage": coverage,
            "rows": table.num_rows,
            "seeds": sorted({s["seed"] for s in plan.shards}),
            "shards": sorted(s["id"] for s in done),
            "shards_sha256": digest,
            **_shard_counts(parts),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    tb.write_atomic(table.replace_schema_metadata({tb.META_KEY: json.dumps(meta, sort_keys=True).encode()}), out)
    update_manifest(
        out,
        root,
        kind="table",
        extra={
            "pair": plan.pair,
            "recipe_id": plan.recipe_id,
            "sampled": plan.sampled,
            "partial": partial,
            "coverage": coverage,
            "live_cells": live_cells(plan),
        },
    )
    log(
        f"merged {len(parts)} of {len(plan.shards)} shards -> {out} ({table.num_rows} rows, "
        f"{100 * coverage:.1f}% of the plan)"
    )
    return out
