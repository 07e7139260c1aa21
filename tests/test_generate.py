"""Tests of table generation: plans, shards, kill and resume, merge, MANIFEST and verify.

Every test that trains uses a tiny recipe (width 4, one or two epochs, batch 32) on the bundled
``digits`` dataset and a handful of architectures, in a temporary tables root (``tables_root`` in
conftest.py), never in the repository's ``tables/``. The slow ones train real students, in-process
(``executor=debug``) or as submitit local tasks (``executor=local``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from danas_bench import cli
from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.pairs import split_pair
from danas_bench.core.paths import CONF_DIR, shard_dir, shard_path, table_path
from danas_bench.core.recipe import KD, Recipe
from danas_bench.tables import generate as g
from danas_bench.tables.manifest import load_manifest, update_manifest, verify
from danas_bench.tables.plan import Plan, check_coverage, make_plan, save_plan

from conftest import TINY_RECIPE, TINY_RECIPE_CLI, cli_cmd, danas_env, make_tables_root

PAIR = "digits/resnet"
RECIPE = Recipe(dataset="digits", **TINY_RECIPE)
RID = RECIPE.recipe_id
# the plan of `finished_run` and of the CLI calls that must agree with it
CLI_ARGS = ["generate", f"pair={PAIR}", TINY_RECIPE_CLI, "archs=8", "shard_size=4", "chunk=4"]


def _plan(pair=PAIR, recipe=RECIPE, archs=8, shard_size=4, **kw) -> Plan:
    return make_plan(pair, recipe, KD(pair.split("/")[1]), seeds=[0], archs=archs, shard_size=shard_size, **kw)


def _snapshot(paths) -> dict:
    """Identity of files: bytes (sha256), inode and mtime, so that a rewrite is seen even with equal bytes."""
    out = {}
    for p in paths:
        st = p.stat()
        out[p.name] = (tb.sha256(p), st.st_ino, st.st_mtime_ns)
    return out


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name]


def _live_group_members(pgid: int) -> list[int]:
    """PIDs of the process group that are alive (zombies left to a non-reaping init do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pg = fields[0], int(fields[2])
        if pg == pgid and state not in ("Z", "X"):
            live.append(int(stat.parent.name))
    return live


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished digits/resnet run, 8 architectures in 2 shards of 4, merged; tests copy it."""
    base = tmp_path_factory.mktemp("finished")
    root = make_tables_root(base / "tables", datasets=("digits",))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in danas_env(root, base / "cache").items():
            mp.setenv(k, v)
        plan = _plan()
        d = shard_dir(PAIR, RID)
        save_plan(plan, d)
        assert g.run_pending(plan, d, executor="debug", chunk=4) == [0, 1]
        g.merge(plan, d)
    return root


@pytest.fixture
def run_copy(finished_run, tables_root) -> Path:
    """A private copy of ``finished_run`` in this test's tables root; returns the shard folder."""
    shutil.copytree(finished_run, tables_root, dirs_exist_ok=True)
    return shard_dir(PAIR, RID)


# --- 1. kill and resume --------------------------------------------------------------------------


def _cmdlines(pgid: int) -> list[str]:
    out = []
    for pid in _live_group_members(pgid):
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return out


@pytest.mark.slow
def test_sigterm_of_generate_stops_its_local_tasks(tables_root, tmp_path):
    """A plain ``kill`` of ``generate`` (SIGTERM to it alone, not its group) also stops the submitit controllers
    and training tasks it started: they are made to outlive their parent and trained on, detached."""
    args = ["generate", f"pair={PAIR}", TINY_RECIPE_CLI, "archs=12", "shard_size=6", "chunk=6", "executor=local"]
    log = tmp_path / "gen.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cli_cmd(*args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(3000):  # a liveness poll (up to 300 s): until a controller has started its task
            assert proc.poll() is None, f"generate exited early ({proc.returncode}):\n{log.read_text()}"
            if any("submitit.core._submit" in c for c in _cmdlines(proc.pid)):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"no submitit task started:\n{log.read_text()}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()
        for _ in range(600):  # the controllers forward the cancel to their tasks at once
            if not _live_group_members(proc.pid):
                break
            time.sleep(0.1)
        assert not _cmdlines(proc.pid), f"left running after SIGTERM: {_cmdlines(proc.pid)}"
    finally:
        if _live_group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_kill_and_resume_local_executor(tables_root, tmp_path, danas_cli):
    """SIGKILL the whole process group mid-run, restart: planned rows exactly, done shards untouched."""
    # two single-threaded tasks in flight (submitit local), so that the kill hits more than one
    # (a task's cost is mostly starting Python and torch: few, larger shards keep the test short)
    args = [
        "generate",
        f"pair={PAIR}",
        TINY_RECIPE_CLI,
        "archs=24",
        "shard_size=6",
        "chunk=6",
        "executor=local",
        "executor.workers=2",
    ]
    d = shard_dir(PAIR, RID)
    assert str(d).startswith(str(tables_root))
    n_shards = 4
    log1 = tmp_path / "first.log"
    with open(log1, "w") as out:
        proc = subprocess.Popen(cli_cmd(*args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list(d.glob("shard-*.parquet"))) < 2:
            assert proc.poll() is None, f"generate exited early ({proc.returncode}):\n{log1.read_text()}"
            assert time.monotonic() < deadline, f"no 2 shards after 300 s:\n{log1.read_text()}"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, submitit's controllers and their training tasks
        proc.wait()
    for _ in range(200):
        if not _live_group_members(proc.pid):
            break
        time.sleep(0.05)
    assert not _live_group_members(proc.pid), "processes of the killed run survived SIGKILL"
    assert proc.returncode == -signal.SIGKILL

    done_before = sorted(d.glob("shard-*.parquet"))
    assert 2 <= len(done_before) < n_shards, f"kill came too late: {len(done_before)} shards done"
    before = _snapshot(done_before)
    acc_before = {
        p.name: dict(zip(*(tb.read(p).column(c).to_pylist() for c in ("arch_index", "test_acc")))) for p in done_before
    }
    assert not table_path(PAIR, RID).exists(), "merged although killed"
    plan = Plan.from_json((d / "plan.json").read_text())
    assert len(plan.shards) == n_shards

    res = danas_cli(*args, timeout=500)
    assert res.returncode == 0, res.stdout + res.stderr
    k = len(done_before)
    assert f"{n_shards} shards, {k} done, {n_shards - k} to run (local)" in res.stdout, res.stdout

    # shards finished before the kill were kept, not retrained or rewritten
    assert _snapshot(done_before) == before
    # the merged table: exactly the planned (architecture, seed) rows, once each
    out = table_path(PAIR, RID)
    assert out == tables_root / "digits" / f"resnet-{RID}.parquet"
    table = tb.read(out)
    keys = list(zip(table.column("arch_index").to_pylist(), table.column("seed").to_pylist()))
    assert len(keys) == 24 == len(set(keys))
    assert set(keys) == plan.rows()
    assert {a for a, _ in keys} <= set(int(i) for i in space.canonical_indices())
    merged_acc = dict(zip(table.column("arch_index").to_pylist(), table.column("test_acc").to_pylist()))
    for name, accs in acc_before.items():
        assert all(merged_acc[a] == v for a, v in accs.items()), f"{name}: values changed after resume"
    assert _temp_files(tables_root) == []
    # the manifest lists the table with its rows and checksum, and verify agrees
    entry = json.loads((tables_root / "MANIFEST").read_text())["files"][f"digits/resnet-{RID}.parquet"]
    assert (entry["rows"], entry["sha256"], entry["recipe_id"]) == (24, tb.sha256(out), RID)
    assert verify() == []
    assert cli.main(["verify"]) == 0


def test_restart_removes_torn_temp_files(run_copy):
    """A killed writer's temp file is swept by the next run; nothing is retrained when all is done."""
    torn = run_copy / ".shard-00001.parquet.tmp-99999"
    torn.write_bytes(b"PAR1 half a file")
    plan = Plan.from_json((run_copy / "plan.json").read_text())
    before = _snapshot(sorted(run_copy.glob("shard-*.parquet")))
    assert g.run_pending(plan, run_copy, executor="debug") == []
    assert not torn.exists()
    assert _snapshot(sorted(run_copy.glob("shard-*.parquet"))) == before


def test_only_seeds_runs_the_shards_of_those_seeds_first(tables_root):
    """Seeds 0 and 1 of every pair before seed 2: `only_seeds` runs only those seeds' pending shards and
    counts only them as to run, the plan keeping every seed; a later call without it runs the rest."""
    plan = make_plan(PAIR, RECIPE, KD("resnet"), seeds=[0, 1, 2], archs=4, shard_size=2, paired_seeds=2)
    d = shard_dir(PAIR, RID, tables_root)
    plan = save_plan(plan, d)
    by_seed = {seed: [s["id"] for s in plan.shards if s["seed"] == seed] for seed in (0, 1, 2)}
    logged = []
    first = g.run_pending(plan, d, executor="debug", chunk=2, log=logged.append, only_seeds=[0, 1])
    assert sorted(first) == sorted(by_seed[0] + by_seed[1])
    assert "4 to run (debug; seeds [0, 1] only)" in logged[0]
    logged.clear()
    assert g.run_pending(plan, d, executor="debug", chunk=2, log=logged.append, only_seeds=[0, 1]) == []
    assert "0 to run" in logged[0]
    assert g.run_pending(plan, d, executor="debug", chunk=2, log=lambda *a: None) == by_seed[2]
    for bad in ([], [3]):  # nothing, or a seed the plan lacks, would read as "nothing to run" and end a phase
        with pytest.raises(ValueError, match=r"give one or more of the plan's seeds \[0, 1, 2\]"):
            g.run_pending(plan, d, executor="debug", only_seeds=bad)
    assert g.run_pending(plan, d, executor="debug", only_seeds=2) == []  # one seed as a bare int


# --- 2. truncated shard ----------------------------------------------------------------------------


@pytest.mark.slow
def test_truncated_shard_is_reported_and_rerun(run_copy, tables_root):
    plan = Plan.from_json((run_copy / "plan.json").read_text())
    bad, good = shard_path(run_copy, 1), shard_path(run_copy, 0)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    table_file = table_path(PAIR, RID)
    table_before = tb.sha256(table_file)

    with pytest.raises(tb.TableError, match="truncated or corrupt") as err:
        g.merge(plan, run_copy)
    assert str(bad) in str(err.value)
    with pytest.raises(tb.TableError) as err:  # the CLI's merge says the same
        cli.main(["merge", f"pair={PAIR}", TINY_RECIPE_CLI])
    assert str(bad) in str(err.value)
    assert tb.sha256(table_file) == table_before, "a failed merge touched the table"
    assert not g.shard_done(bad, plan, plan.shards[1])
    assert g.shard_done(good, plan, plan.shards[0])

    keep = _snapshot([good])
    assert g.run_pending(plan, run_copy, executor="debug", chunk=4) == [1]  # only the torn shard reruns
    assert _snapshot([good]) == keep
    assert g.shard_done(bad, plan, plan.shards[1])
    out = g.merge(plan, run_copy)
    assert tb.read(out).num_rows == 8
    assert verify() == []


# --- 3. foreign and misplaced shards ---------------------------------------------------------------


def test_foreign_recipe_shard_is_rejected(run_copy):
    plan = Plan.from_json((run_copy / "plan.json").read_text())
    p = shard_path(run_copy, 1)
    table = tb.read(p)
    meta = {**tb.read_meta(p), "recipe_id": Recipe(dataset="digits", width=8, epochs=1).recipe_id}
    tb.write_atomic(tb.to_table(table.to_pylist(), meta), p)
    table_file = table_path(PAIR, RID)
    table_before = tb.sha256(table_file)

    with pytest.raises(tb.TableError, match="foreign") as err:
        g.merge(plan, run_copy)
    assert str(p) in str(err.value)
    assert not g.shard_done(p, plan, plan.shards[1])  # generate would redo it
    assert tb.sha256(table_file) == table_before


def test_shard_of_another_pair_or_slot_is_rejected(run_copy):
    plan = Plan.from_json((run_copy / "plan.json").read_text())
    shutil.copy(shard_path(run_copy, 0), shard_path(run_copy, 1))  # right recipe, wrong slot
    with pytest.raises(tb.TableError, match="expected digits/resnet shard 1"):
        g.merge(plan, run_copy)
    p = shard_path(run_copy, 1)
    table = tb.read(shard_path(run_copy, 0))
    meta = {**tb.read_meta(p), "pair": "digits/mlp", "shard": 1}
    tb.write_atomic(tb.to_table(table.to_pylist(), meta), p)
    with pytest.raises(tb.TableError, match="holds pair digits/mlp"):
        g.merge(plan, run_copy)


def test_merge_refuses_missing_shards(run_copy):
    plan = Plan.from_json((run_copy / "plan.json").read_text())
    shard_path(run_copy, 1).unlink()
    with pytest.raises(tb.TableError, match=r"1 of 2 shards missing .*shard-00001\.parquet"):
        g.merge(plan, run_copy)


def test_coverage_rejects_duplicates_and_gaps(run_copy):
    table = tb.read(table_path(PAIR, RID))
    plan = Plan.from_json((run_copy / "plan.json").read_text())
    check_coverage(table, plan.rows(), "t")
    import pyarrow as pa

    with pytest.raises(tb.TableError, match="duplicate rows"):
        check_coverage(pa.concat_tables([table, table.slice(0, 1)]), plan.rows(), "t")
    with pytest.raises(tb.TableError, match="1 planned rows missing"):
        check_coverage(table.slice(1), plan.rows(), "t")


# --- 4. MANIFEST and verify -----------------------------------------------------------------------


def test_verify_reports_changed_table(run_copy, tables_root, danas_cli):
    rel = f"digits/resnet-{RID}.parquet"
    out = tables_root / rel
    ok = danas_cli("verify")
    assert ok.returncode == 0 and "OK: 1 files" in ok.stdout, ok.stdout + ok.stderr
    original = out.read_bytes()

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    out.write_bytes(bytes(flipped))
    problems = verify()
    assert len(problems) == 1 and problems[0].startswith(rel) and "sha256" in problems[0]
    assert "does not match MANIFEST" in problems[0]
    res = danas_cli("verify")
    assert res.returncode == 1
    assert f"FAIL {rel}: sha256" in res.stdout

    out.write_bytes(original + b"\0")
    assert any(p.startswith(rel) and "sha256" in p for p in verify())
    assert cli.main(["verify"]) == 1

    out.write_bytes(original)
    assert verify() == []
    out.unlink()
    assert verify() == [f"{rel}: listed in MANIFEST but missing"]


def test_verify_checks_rows_against_manifest(run_copy, tables_root):
    """A manifest entry edited by hand (rows, recipe) is caught even when the checksum matches."""
    rel = f"digits/resnet-{RID}.parquet"
    man_path = tables_root / "MANIFEST"
    man = json.loads(man_path.read_text())
    assert man["manifest_version"] == 1
    entry = man["files"][rel]
    assert {"kind", "sha256", "bytes", "rows", "recipe_id", "pair", "sampled", "created"} <= set(entry)
    assert (entry["kind"], entry["pair"], entry["sampled"]) == ("table", PAIR, True)
    assert entry["bytes"] == (tables_root / rel).stat().st_size
    entry["rows"] = 9
    man_path.write_text(json.dumps(man))
    assert verify() == [f"{rel}: 8 rows, MANIFEST says 9"]


def test_verify_empty_or_corrupt_manifest(tables_root):
    assert verify() == [f"{tables_root / 'MANIFEST'}: no files listed"]
    (tables_root / "MANIFEST").write_text("{not json")
    problems = verify()  # a malformed MANIFEST is one problem line, not a traceback
    assert len(problems) == 1 and "MANIFEST: not valid JSON" in problems[0] and "\n" not in problems[0]


def test_manifest_updates_do_not_lose_entries(tables_root):
    """Concurrent merges (several pairs at once) each add their entry; none is lost."""
    files = []
    for i in range(16):
        p = tables_root / f"f{i}.txt"
        p.write_text(str(i))
        files.append(p)
    threads = [threading.Thread(target=lambda p=p: [update_manifest(p, kind="other") for _ in range(5)]) for p in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    man = load_manifest()
    assert sorted(man["files"]) == sorted(p.name for p in files)
    assert all(man["files"][p.name]["sha256"] == tb.sha256(p) for p in files)
    assert verify() == []


# --- 5. plan drift --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    ["shard_size=2", "archs=16", "seeds=[0,1]", "kd.temperature=2.0", "arch_sample_seed=1", "noise_seeds=[1]"],
)
def test_plan_drift_is_refused(run_copy, override):
    plan_file = run_copy / "plan.json"
    before = plan_file.read_text()
    with pytest.raises(ValueError, match="holds a different plan") as err:
        cli.main([*CLI_ARGS, override, "executor=debug"])
    assert str(run_copy) in str(err.value)
    assert "it has 2 shards" in str(err.value)  # says what the stored plan holds
    assert plan_file.read_text() == before
    assert sorted(p.name for p in run_copy.glob("shard-*")) == ["shard-00000.parquet", "shard-00001.parquet"]


def test_a_dry_run_warns_of_the_drift_a_real_run_would_stop_on(run_copy, capsys):
    """A dry run writes nothing either way, but says the folder holds another plan and counts nothing done."""
    before = (run_copy / "plan.json").read_text()
    assert cli.main([*CLI_ARGS, "executor=debug", "dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert "2 done" in out and "WARNING" not in out  # the stored plan: its two shards are done
    assert cli.main([*CLI_ARGS, "seeds=[0,1]", "executor=debug", "dry_run=true"]) == 1  # what the run would do
    out = capsys.readouterr().out
    assert "0 done" in out and "WARNING: a real run would stop here" in out and "holds a different plan" in out
    assert (run_copy / "plan.json").read_text() == before


def test_same_plan_resumes(run_copy):
    plan_file = run_copy / "plan.json"
    before = plan_file.read_text()
    again = save_plan(_plan(), run_copy)
    assert again == Plan.from_json(before)
    assert plan_file.read_text() == before
    # the CLI with the same settings finds every shard done, trains nothing and re-merges
    shards = _snapshot(sorted(run_copy.glob("shard-*.parquet")))
    assert cli.main([*CLI_ARGS, "executor=debug"]) == 0
    assert _snapshot(sorted(run_copy.glob("shard-*.parquet"))) == shards
    assert verify() == []


# --- 6. debug executor, row contents --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("teacher", ["resnet", "none"])
def test_debug_executor_rows(tables_root, teacher):
    pair = f"digits/{teacher}"
    recipe = Recipe(dataset="digits", **{**TINY_RECIPE, "epochs": 2})
    kd = KD(teacher)
    plan = make_plan(pair, recipe, kd, seeds=[0], archs=4, shard_size=2)
    d = shard_dir(pair, recipe.recipe_id)
    assert d == tables_root / "shards" / f"digits__{teacher}" / recipe.recipe_id
    save_plan(plan, d)
    assert g.run_pending(plan, d, executor="debug", chunk=2) == [0, 1]
    assert g.run_pending(plan, d, executor="debug", chunk=2) == []  # resumed: nothing left
    out = g.merge(plan, d)
    assert out == tables_root / "digits" / f"{teacher}-{recipe.recipe_id}.parquet"

    table = tb.read(out)
    assert table.schema.names == tb.RESULT_SCHEMA.names
    rows = table.to_pylist()
    assert len(rows) == 4
    assert [r["arch_index"] for r in rows] == sorted(a for s in plan.shards for a in s["archs"])
    for r in rows:
        assert r["arch"] == space.arch_str(r["arch_index"])
        assert (r["seed"], r["teacher"], r["recipe_id"], r["epochs"], r["source"]) == (
            0,
            teacher,
            recipe.recipe_id,
            2,
            "table",
        )
        assert r["kd_alpha"] == pytest.approx(0.9 if teacher != "none" else 0.0)
        assert r["kd_temperature"] == pytest.approx(4.0)
        for col in ("train_loss", "train_acc", "valid_acc_curve", "epoch_seconds"):
            assert isinstance(r[col], list) and len(r[col]) == 2, col
        assert all(v > 0 and v == v for v in r["train_loss"])
        assert all(0 <= v <= 1 for v in r["train_acc"] + r["valid_acc_curve"])
        assert r["valid_acc"] == pytest.approx(r["valid_acc_curve"][-1])
        for col in ("test_acc", "valid_acc", "test_ece", "valid_ece"):
            assert 0.0 <= r[col] <= 1.0, col
        assert r["test_loss"] > 0 and r["train_seconds"] > 0
        assert r["batch_size_models"] == 2
        if teacher == "none":
            assert all(
                r[c] is None for c in ("test_agreement", "valid_agreement", "test_kl_teacher", "valid_kl_teacher")
            )
        else:
            assert 0.0 <= r["test_agreement"] <= 1.0 and 0.0 <= r["valid_agreement"] <= 1.0
            assert r["test_kl_teacher"] >= 0.0 and r["valid_kl_teacher"] >= 0.0
    meta = tb.read_meta(out)
    assert (meta["pair"], meta["teacher"], meta["recipe_id"], meta["rows"], meta["sampled"]) == (
        pair,
        teacher,
        recipe.recipe_id,
        4,
        True,
    )
    assert meta["recipe"] == recipe.to_dict() and meta["kd"] == plan.kd
    assert set(meta["split_hashes"]) >= {"train", "valid", "test"}
    assert ("teacher_accuracy" in meta) == (teacher != "none")
    # provenance: the commit the shards were trained with, counted per revision
    assert meta["code_revision"] == tb.code_revision() != "" and sum(meta["shard_code_revisions"].values()) == len(
        meta["shards"]
    )
    assert meta["shard_machines"] == {tb.machine()["host_cpu"]: len(meta["shards"])}  # where seconds were measured
    assert meta["shard_torch_versions"] == {torch.__version__: len(meta["shards"])}  # what they were computed with
    assert pq.ParquetFile(out).metadata.num_rows == 4
    assert verify() == []


# --- 6b. a burst on a borrowed machine (scripts/burst_shards.py) -----------------------------------

BURST = Path(__file__).resolve().parents[1] / "scripts" / "burst_shards.py"


def _burst(d: Path, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, str(BURST), str(d), *args], capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@pytest.mark.slow
def test_burst_shards_are_generates_shards(finished_run, tables_root):
    """Shards trained by burst_shards.py (its own processes, its own chunk), highest ids first, hold the rows
    ``generate`` wrote for the same plan, bit for bit, and validate: a ``generate`` run afterwards finds nothing
    to do."""
    d = shard_dir(PAIR, RID)
    save_plan(_plan(), d)
    # at 1,000 s per architecture no shard ends within 10 s: none starts
    assert "0 shards in" in _burst(d, "--deadline", "10", "--rate", "1000")
    assert not list(d.glob("shard-*.parquet"))
    out = _burst(d, "--from-end", "--workers", "1")
    assert out.index("shard 1 done") < out.index("shard 0 done") and "2 shards in" in out and "0 not started" in out
    plan = Plan.from_json((d / "plan.json").read_text())
    assert g.run_pending(plan, d, executor="debug") == []  # both validate as planned shards
    ref = shard_dir(PAIR, RID, finished_run)
    for sid in (0, 1):
        got, want = tb.read(shard_path(d, sid)), tb.read(shard_path(ref, sid))
        for col in ("arch_index", "seed", "valid_acc", "test_acc", "train_loss"):
            assert got.column(col).to_pylist() == want.column(col).to_pylist(), col


def test_burst_start_rule_and_bad_seeds(tables_root):
    """A shard starts while it would end in time at the slowest rate so far (any size: a seed's last shard is
    smaller), always before a rate is known; a seed the plan lacks is refused, not read as nothing to do."""
    spec = importlib.util.spec_from_file_location("burst_shards", BURST)
    burst = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(burst)
    assert burst.fits(500.0, 128, None, 380.0)  # no rate yet: the first wave starts
    assert burst.fits(100.0, 128, 2.0, 400.0, margin=1.0) and not burst.fits(100.0, 128, 2.5, 400.0, margin=1.0)
    assert burst.fits(100.0, 66, 2.5, 400.0, margin=1.0)  # the small last shard still fits
    assert not burst.fits(100.0, 128, 2.0, 400.0, margin=1.2)
    d = shard_dir(PAIR, RID)
    save_plan(_plan(), d)
    res = subprocess.run([sys.executable, str(BURST), str(d), "--only-seeds", "7"], capture_output=True, text=True)
    assert res.returncode == 2 and "only_seeds=[7]" in res.stderr and "seeds [0]" in res.stderr


def test_code_revision_of_a_copy_comes_from_the_environment(monkeypatch):
    """$DANAS_CODE_REVISION names a copy's commit, also over a stale .git (the device's copy of session 27
    carried the session's first commit); without it, git's answer, else "unknown"."""
    monkeypatch.delenv("DANAS_CODE_REVISION", raising=False)
    monkeypatch.setattr(tb, "git_revision", lambda: (None, False))
    assert tb.code_revision() == "unknown"
    monkeypatch.setattr(tb, "git_revision", lambda: ("e31174b46f9c", True))
    assert tb.code_revision() == "e31174b46f9c+modified"
    monkeypatch.setenv("DANAS_CODE_REVISION", "cf667c148a19")
    assert tb.code_revision() == "cf667c148a19"


# --- 7. bad input ---------------------------------------------------------------------------------

VALID = "valid pairs: mnist1d/resnet_ens, mnist1d/tcn, mnist1d/none, digits/resnet"


@pytest.mark.parametrize(
    "pair, expected",
    [
        ("digits/vit", ["unknown teacher 'vit' for digits", "choose one of resnet, vgg, mlp, none"]),
        ("digits/", ["unknown teacher '' for digits", "choose one of resnet, vgg, mlp, none"]),
        ("cifar11/resnet", ["unknown dataset 'cifar11'", "datasets with teachers: mnist1d, digits"]),
        ("/resnet", ["unknown dataset ''", "datasets with teachers: mnist1d, digits"]),
        ("digits", ["'dataset/teacher', got 'digits'", VALID]),
        ("digits/resnet/x", ["got 'digits/resnet/x'", VALID]),
        ("digits-resnet", ["got 'digits-resnet'", VALID]),
        ("", ["got ''", VALID]),
        (None, ["got None", VALID]),
    ],
)
def test_bad_pair_lists_valid_choices(pair, expected):
    with pytest.raises(ValueError) as err:
        split_pair(pair)
    for part in expected:
        assert part in str(err.value)
    with pytest.raises(ValueError) as err:  # make_plan checks the pair before it plans anything
        make_plan(pair, RECIPE, KD("resnet"), archs=4)
    assert expected[-1] in str(err.value)


def test_bad_pair_via_cli(tables_root):
    with pytest.raises(ValueError, match="choose one of resnet, vgg, mlp, none"):
        cli.main(["generate", "pair=digits/vit", TINY_RECIPE_CLI, "executor=debug"])
    with pytest.raises(ValueError, match="valid pairs: .*digits/resnet"):
        cli.main(["generate", "pair=digits", TINY_RECIPE_CLI, "executor=debug"])
    assert not (tables_root / "shards").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pair": "mnist1d/resnet"}, "recipe is for 'digits'"),
        ({"kd": KD("mlp")}, "KD setting names 'mlp'"),
        ({"shard_size": 0}, "shard_size must be >= 1"),
        ({"archs": 0}, r"archs must be 'all' or an int"),
        ({"archs": 10**6}, r"archs must be 'all' or an int"),
        ({"seeds": [0, 0]}, "without repeats"),
        ({"seeds": []}, "non-empty"),
        ({"noise_seeds": [0]}, "must not overlap"),
        ({"noise_seeds": [1], "noise_fraction": 0.0}, "noise_fraction"),
    ],
)
def test_make_plan_rejects_inconsistent_settings(kwargs, match):
    args = {"pair": PAIR, "recipe": RECIPE, "kd": KD("resnet"), "seeds": [0], "archs": 8, "shard_size": 4}
    with pytest.raises(ValueError, match=match):
        make_plan(**{**args, **kwargs})


def test_run_pending_rejects_bad_executor(tables_root):
    plan = _plan()
    d = shard_dir(PAIR, RID)
    save_plan(plan, d)
    with pytest.raises(ValueError, match="choose local, slurm or debug"):
        g.run_pending(plan, d, executor="ray")
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        g.run_pending(plan, d, executor="debug", chunk=0)
    assert list(d.glob("shard-*")) == []


# --- plans (no training) --------------------------------------------------------------------------


def test_plan_shards_cover_rows_once():
    plan = make_plan(
        PAIR, RECIPE, KD("resnet"), seeds=[0, 1], archs=50, shard_size=16, noise_seeds=[2, 3], noise_fraction=0.2
    )
    assert [s["id"] for s in plan.shards] == list(range(len(plan.shards)))
    assert all(1 <= len(s["archs"]) <= 16 for s in plan.shards)
    rows = [(a, s["seed"]) for s in plan.shards for a in s["archs"]]
    assert len(rows) == len(set(rows)) == 2 * 50 + 2 * 10
    base = {a for a, seed in rows if seed == 0}
    assert base == {a for a, seed in rows if seed == 1}
    assert {a for a, seed in rows if seed == 2} == {a for a, seed in rows if seed == 3} < base
    assert base <= set(int(i) for i in space.canonical_indices())
    assert plan.sampled
    # deterministic, and the JSON round trip is exact (resume compares plans)
    again = make_plan(
        PAIR, RECIPE, KD("resnet"), seeds=[0, 1], archs=50, shard_size=16, noise_seeds=[2, 3], noise_fraction=0.2
    )
    assert again == plan == Plan.from_json(plan.to_json())
    full = make_plan("digits/none", RECIPE, KD("none"), archs="all", shard_size=1000)
    assert not full.sampled and len(full.rows()) == len(space.canonical_indices())
    assert full.kd["alpha"] == 0.0


# --- executor profiles (no cluster needed) ---------------------------------------------------------


@pytest.mark.parametrize("profile", ["slurm", "cpu_cluster", "gpu_cluster"])
def test_slurm_profiles_compose(profile):
    """The SLURM profiles compose, carry every key the SLURM executor reads, and say what to change."""
    from omegaconf import OmegaConf

    cfg = cli.compose("generate", [f"executor={profile}", "+executor.additional_parameters.account=acct"])
    ex = OmegaConf.to_container(cfg.executor)
    assert ex["name"] == "slurm"
    assert {
        "partition",
        "timeout_min",
        "cpus_per_task",
        "mem_gb",
        "gpus_per_node",
        "array_parallelism",
        "max_array_size",
        "poll_s",
        "result_grace_s",
        "additional_parameters",
    } <= set(ex)
    assert ex["additional_parameters"] == {"account": "acct"}
    if profile != "slurm":
        text = (CONF_DIR / "executor" / f"{profile}.yaml").read_text()
        assert text.count("CHANGE") >= 3


def test_archs_command_covers_the_sample_generate_trains(tables_root):
    """Tier M: `danas-bench archs archs=N` measures exactly the architectures `generate archs=N` plans."""
    assert cli.main(["archs", "dataset=digits", "archs=5", TINY_RECIPE_CLI]) == 0
    facts = pq.read_table(tables_root / "digits" / f"archs-{RID}.parquet").to_pylist()
    planned = {a for s in _plan(archs=5).shards for a in s["archs"]}
    assert {r["arch_index"] for r in facts} == planned and len(facts) == 5
    assert all(r["flops"] > 0 and r["params"] > 0 and r["latency_ms"] > 0 for r in facts)
    with pytest.raises(ValueError, match="archs must be 'all' or an int"):
        cli.main(["archs", "dataset=digits", "archs=many", TINY_RECIPE_CLI])


@pytest.mark.parametrize(("dataset", "version", "chunk"), [("mnist1d", "v2", 128), ("digits", "v2", 64)])
def test_chunk_auto_fuses_128_at_width_8_else_64(tmp_path, dataset, version, chunk):
    """``chunk: auto`` (the default) follows the recipe's width; the dry run prints what a run would use."""
    from danas_bench.core.recipe import recipe_for

    assert g.auto_chunk(recipe_for(dataset, version)) == chunk
    env = {**os.environ, "DANAS_TABLES": str(tmp_path / "tables"), "DANAS_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "danas_bench.cli", "generate", f"pair={dataset}/none", f"recipe_version={version}"]
    r = subprocess.run([*cmd, "executor=slurm", "dry_run=true"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"chunk={chunk} architectures fused" in r.stdout
