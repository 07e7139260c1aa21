"""Table generation through submitit on a real SLURM (slurmctld + slurmd + munged), not a mock.

``make test`` (and so ``.ci/run``) starts a single-node cluster with ``slurm/cluster.sh start`` before
pytest and stops it after; by hand::

    bash slurm/cluster.sh install && bash slurm/cluster.sh start
    .venv/bin/pytest -m slurm tests/test_slurm.py
    bash slurm/cluster.sh stop

Without a reachable SLURM (``sinfo`` missing or unable to reach slurmctld, or no usable node) the
tests skip and say why; with ``DANAS_REQUIRE_SLURM=1`` in the environment they fail instead, so that
a CI whose cluster did not come up cannot pass by skipping them.

The array tasks run under slurmd on this host with the environment of the submitting command
(sbatch exports it), so they read the teachers from, and write their shards into, the test's
temporary tables root (``$DANAS_TABLES``), never the repository's ``tables/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from danas_bench.core import schema as tb
from danas_bench.core.paths import shard_dir, shard_path, table_path
from danas_bench.core.recipe import Recipe
from danas_bench.tables import generate as g
from danas_bench.tables.manifest import verify
from danas_bench.tables.plan import Plan

from conftest import TINY_RECIPE, TINY_RECIPE_CLI, cli_cmd

pytestmark = pytest.mark.slurm

PAIR = "digits/resnet"
RID = Recipe(dataset="digits", **TINY_RECIPE).recipe_id
# a few dozen architectures in shards of 8: one array task trains 8 students (about 15-30 s here)
BASE = ["generate", f"pair={PAIR}", TINY_RECIPE_CLI, "archs=24", "shard_size=8", "chunk=8", "executor=slurm"]
N_SHARDS = 3
SUBMITTED = re.compile(r"submitted SLURM (?:array )?job (\d+) with (\d+) tasks?")
USABLE = {"idle", "mixed", "allocated", "completing"}


def _slurm_problem() -> str | None:
    """Why no SLURM is usable from here, or None when sinfo reaches a controller with a usable node."""
    if shutil.which("sinfo") is None:
        return "`sinfo` is not on PATH (slurm-wlm is not installed)"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`sinfo` did not answer within 30 s"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`sinfo` cannot reach slurmctld ({last})"
    states = {s.rstrip("*~#$@^-+") for s in r.stdout.split()}
    if not states & USABLE:
        return f"no usable SLURM node (node states: {', '.join(sorted(states)) or 'none'})"
    return None


@pytest.fixture(scope="module")
def slurm_problem() -> str | None:
    return _slurm_problem()


@pytest.fixture(autouse=True)
def _need_slurm(slurm_problem):
    if slurm_problem:
        msg = (
            f"no SLURM reachable: {slurm_problem}; start the test cluster with "
            f"`bash slurm/cluster.sh install && bash slurm/cluster.sh start` (`make test` does)"
        )
        if os.environ.get("DANAS_REQUIRE_SLURM") == "1":
            pytest.fail(msg + " [DANAS_REQUIRE_SLURM=1]")
        pytest.skip(msg)


def _squeue(*job_ids: str) -> dict[str, str]:
    """``{"<array>_<task>": state}`` of the given array jobs (finished ones too, until MinJobAge)."""
    out = {}
    for jid in job_ids:
        r = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", jid, "-o", "%i|%T"], capture_output=True, text=True, timeout=60
        )
        out.update(line.split("|", 1) for line in r.stdout.split() if "|" in line)
    return out


def _settled(*job_ids: str, timeout: float = 120) -> dict[str, str]:
    """``_squeue`` once no task is pending or running any more: a task writes its result (and
    generate returns) a moment before slurmd reports the task COMPLETED."""
    deadline = time.monotonic() + timeout
    while True:
        states = _squeue(*job_ids)
        if not set(states.values()) & g._SLURM_ACTIVE or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _arrays(text: str) -> list[tuple[str, int]]:
    return [(jid, int(n)) for jid, n in SUBMITTED.findall(text)]


def _snapshot(paths) -> dict:
    return {p.name: (tb.sha256(p), p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def _check_table(root: Path, d: Path) -> None:
    """The merged table holds exactly the planned (architecture, seed) rows, once each; verify agrees."""
    plan = Plan.from_json((d / "plan.json").read_text())
    out = table_path(PAIR, RID)
    assert out == root / "digits" / f"resnet-{RID}.parquet"
    table = tb.read(out)
    keys = list(zip(table.column("arch_index").to_pylist(), table.column("seed").to_pylist()))
    assert len(keys) == 24 == len(set(keys)), "duplicate or missing rows"
    assert set(keys) == plan.rows()
    assert set(table.column("recipe_id").to_pylist()) == {RID}
    assert verify() == []
    res = subprocess.run(cli_cmd("verify"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "OK: 1 files" in res.stdout, res.stdout + res.stderr
    assert [p for p in root.rglob(".*") if ".tmp-" in p.name] == []


def _cancel_leftovers(text: str) -> None:
    """Cancel the array jobs this test submitted (by id), should it fail half-way."""
    ids = [jid for jid, _ in _arrays(text)]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


def test_generate_submits_array_job_and_merges(tables_root):
    """`danas-bench generate executor=slurm`: real array jobs, waited for, merged and verified.

    ``executor.max_array_size=2`` splits the 3 shards over two array jobs (2 + 1 tasks), the path a
    large plan takes on a cluster whose MaxArraySize is smaller than its number of shards.
    """
    d = shard_dir(PAIR, RID)
    assert str(d).startswith(str(tables_root))
    res = subprocess.run(cli_cmd(*BASE, "executor.max_array_size=2"), capture_output=True, text=True, timeout=400)
    text = res.stdout + res.stderr
    try:
        assert res.returncode == 0, text
        assert f"{N_SHARDS} shards, 0 done, {N_SHARDS} to run (slurm)" in text, text
        arrays = _arrays(text)
        assert [n for _, n in arrays] == [2, 1], text
        # slurmctld ran them as array tasks, and they completed
        states = _settled(*(jid for jid, _ in arrays))
        # submitit sends a lone task as a plain job: its id has no "_<task>"
        expected = {f"{jid}_{i}" if n > 1 else jid for jid, n in arrays for i in range(n)}
        assert set(states) == expected and set(states.values()) == {"COMPLETED"}, states
        # each task ran under SLURM (submitit logs SLURM's job id) and trained one shard, in order:
        # task i of an array trains the i-th pending shard
        sid = 0
        for jid, n in arrays:
            for i in range(n):
                task = f"{jid}_{i}" if n > 1 else jid
                log = (d / "logs" / task / f"{task}_0_log.out").read_text()
                assert f"JobEnvironment(job_id={task}," in log, log
                assert f"shard {sid}: {PAIR}, seed 0, 8 architectures -> {shard_path(d, sid)}" in log, log
                assert f"shard {sid}: written in" in log, log
                sid += 1
        assert "sacct" not in text, "the wait asked sacct (no accounting here) instead of squeue"
        assert f"merged {N_SHARDS} of {N_SHARDS} shards" in text, text
        assert sorted(p.name for p in d.glob("shard-*.parquet")) == [f"shard-{i:05d}.parquet" for i in range(N_SHARDS)]
        _check_table(tables_root, d)
    finally:
        _cancel_leftovers(text)


def test_scancel_one_task_then_resubmit(tables_root, tmp_path):
    """scancel one running array task: the run reports it, a rerun resubmits only its shard."""
    d = shard_dir(PAIR, RID)
    log1 = tmp_path / "first.log"
    text = ""
    with open(log1, "w") as out:
        proc = subprocess.Popen(
            cli_cmd(*BASE, "executor.array_parallelism=2"), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # the array job id, from generate's own output
        deadline = time.monotonic() + 120
        while not _arrays(log1.read_text()):
            assert proc.poll() is None, f"generate exited ({proc.returncode}):\n{log1.read_text()}"
            assert time.monotonic() < deadline, f"no array job submitted after 120 s:\n{log1.read_text()}"
            time.sleep(0.2)
        [(array_id, n_tasks)] = _arrays(log1.read_text())
        assert n_tasks == N_SHARDS
        # cancel the first task seen running, at once: it is killed well before its shard is done
        deadline = time.monotonic() + 120
        while True:
            running = sorted(t for t, s in _squeue(array_id).items() if s == "RUNNING")
            if running:
                break
            assert proc.poll() is None, f"generate exited ({proc.returncode}):\n{log1.read_text()}"
            assert time.monotonic() < deadline, f"no task running after 120 s: {_squeue(array_id)}"
            time.sleep(0.2)
        victim = running[0]
        victim_shard = int(victim.split("_")[1])  # one array, task i trains pending shard i
        subprocess.run(["scancel", victim], check=True, timeout=60)

        rc = proc.wait(timeout=400)
        text = log1.read_text()
        assert rc != 0, f"generate succeeded although task {victim} was cancelled:\n{text}"
        assert "1 SLURM tasks did not finish (rerun the same command to resume)" in text, text
        assert f"task {victim} (shard {victim_shard}): CANCELLED without a result" in text, text
        states = _settled(array_id)
        assert states[victim] == "CANCELLED", states
        assert all(s == "COMPLETED" for t, s in states.items() if t != victim), states
    finally:
        if proc.poll() is None:  # only the process group this test started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _cancel_leftovers(log1.read_text())

    victim_path = shard_path(d, victim_shard)
    assert not victim_path.exists(), (
        f"task {victim} finished its shard within SLURM's KillWait after scancel; the shard is too "
        f"small for this machine (raise shard_size)"
    )
    done = sorted(d.glob("shard-*.parquet"))
    assert len(done) == N_SHARDS - 1
    before = _snapshot(done)
    assert not table_path(PAIR, RID).exists(), "merged although a shard was lost"

    # resubmit: the same command submits one task for the lost shard, then merges
    res = subprocess.run(cli_cmd(*BASE, "executor.array_parallelism=2"), capture_output=True, text=True, timeout=400)
    text2 = res.stdout + res.stderr
    try:
        assert res.returncode == 0, text2
        assert f"{N_SHARDS} shards, {N_SHARDS - 1} done, 1 to run (slurm)" in text2, text2
        [(array2, n2)] = _arrays(text2)
        assert n2 == 1 and array2 != array_id
        assert f"(shards {victim_shard}..{victim_shard})" in text2, text2
        assert f"submitted SLURM job {array2} with 1 task (shards" in text2, text2  # a lone task: plain job
        assert _settled(array2) == {array2: "COMPLETED"}
        assert victim_path.exists()
        assert _snapshot(done) == before, "shards finished before the cancel were rewritten"
        _check_table(tables_root, d)
    finally:
        _cancel_leftovers(text2)


def test_several_shards_per_task(tables_root):
    """`executor.shards_per_task=2`: 3 shards go out as 2 array tasks (2 + 1 shards), every shard is
    written and the table merges; a task's log names each shard it trained."""
    d = shard_dir(PAIR, RID)
    res = subprocess.run(cli_cmd(*BASE, "executor.shards_per_task=2"), capture_output=True, text=True, timeout=400)
    text = res.stdout + res.stderr
    try:
        assert res.returncode == 0, text
        arrays = _arrays(text)
        assert [n for _, n in arrays] == [2], text
        assert "2 per task" in text, text
        jid = arrays[0][0]
        first = (d / "logs" / f"{jid}_0" / f"{jid}_0_0_log.out").read_text()
        assert "shard 0: written in" in first and "shard 1: written in" in first, first
        assert f"merged {N_SHARDS} of {N_SHARDS} shards" in text, text
        _check_table(tables_root, d)
    finally:
        _cancel_leftovers(text)
