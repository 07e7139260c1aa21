"""Integrity: a damaged table, cache or input is an error, never a silent wrong answer.

Every test works in a copy under ``tmp_path``: a shipped table copied with its MANIFEST entry, or small
tables written here with the library's own writer (``tables.write_atomic``, ``generate.update_manifest``)
and values drawn from a seeded generator. The live-training tests train one real tiny student.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import danas_bench as db
from danas_bench import cli
from danas_bench.core import schema as tb
from danas_bench.core import space
from danas_bench.core.budget import Budget
from danas_bench.core.paths import shard_dir, shard_path, table_path
from danas_bench.core.recipe import KD, Recipe
from danas_bench.query.overlay import Overlay
from danas_bench.tables import generate as g
from danas_bench.tables.manifest import register_teachers, update_manifest, verify
from danas_bench.tables.plan import make_plan, save_plan

from conftest import REPO, danas_env, make_tables_root

RECIPE = Recipe(dataset="digits", width=4, epochs=2, batch_size=32, n_train=128)
SHIPPED = REPO / "tables"


# --- helpers -----------------------------------------------------------------------------------------


def records(pair: str, archs, seeds=(0,), recipe: Recipe = RECIPE, rng_seed: int = 0) -> list[dict]:
    """Plausible rows (accuracies in [0, 1], positive losses and seconds) drawn from a seeded generator."""
    rng = np.random.default_rng(rng_seed)
    kd = KD(pair.split("/")[1])
    e = recipe.epochs
    out = []
    for seed in seeds:
        for a in archs:
            acc = float(rng.uniform(0.1, 0.95))
            out.append(
                {
                    "arch_index": int(a),
                    "arch": space.arch_str(int(a)),
                    "seed": int(seed),
                    "teacher": kd.teacher,
                    "kd_temperature": kd.temperature,
                    "kd_alpha": kd.alpha,
                    "recipe_id": recipe.recipe_id,
                    "epochs": e,
                    "train_loss": list(rng.uniform(0.5, 2.0, e)),
                    "train_acc": list(rng.uniform(0.1, 1, e)),
                    "valid_acc_curve": list(rng.uniform(0.1, 0.9, e - 1)) + [acc],
                    "epoch_seconds": list(rng.uniform(0.1, 1, e)),
                    "valid_acc": acc,
                    "valid_loss": float(rng.uniform(0.2, 2)),
                    "valid_ece": 0.05,
                    "valid_kl_teacher": None if kd.teacher == "none" else 0.5,
                    "valid_agreement": None if kd.teacher == "none" else acc,
                    "test_acc": float(rng.uniform(0.1, 0.95)),
                    "test_loss": float(rng.uniform(0.2, 2)),
                    "test_ece": 0.05,
                    "test_kl_teacher": None if kd.teacher == "none" else 0.5,
                    "test_agreement": None if kd.teacher == "none" else acc,
                    "train_seconds": float(rng.uniform(0.5, 2)),
                    "batch_size_models": 16,
                }
            )
    return out


def write_table(root: Path, pair: str, archs, seeds=(0,), listed: bool = True, edit=None, meta_extra=None) -> Path:
    """A table of ``pair`` written with the library's writer (page checksums); listed in root's MANIFEST
    unless ``listed=False``; ``edit(rows)`` may damage the rows first."""
    from danas_bench.training import data as data_mod

    dataset, teacher = pair.split("/")
    rows = records(pair, archs, seeds)
    if edit is not None:
        edit(rows)
    meta = {
        "pair": pair,
        "dataset": dataset,
        "teacher": teacher,
        "recipe": RECIPE.to_dict(),
        "recipe_id": RECIPE.recipe_id,
        "kd": dict(KD(teacher).__dict__),
        "seeds": sorted(seeds),
        "split_hashes": data_mod.load(dataset).split_hashes,
        "schema_version": tb.SCHEMA_VERSION,
        **(meta_extra or {}),
    }
    path = table_path(pair, RECIPE.recipe_id, root)
    tb.write_atomic(tb.to_table(rows, meta), path)
    if listed:
        update_manifest(
            path,
            root,
            kind="table",
            extra={"pair": pair, "recipe_id": RECIPE.recipe_id, "sampled": True, "partial": False},
        )
    return path


def flip_bit_in_column(path: Path, column: str) -> None:
    """Flip one bit near the end of ``column``'s chunk: in a data page's values, not in a header."""
    md = pq.ParquetFile(path).metadata
    names = [md.schema.column(i).path for i in range(md.num_columns)]
    cc = md.row_group(0).column(names.index(column))
    start = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
    pos = start + cc.total_compressed_size - 3  # inside the last page's values
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))


def overlay_files(cache: Path) -> list[Path]:
    return sorted((cache / "overlay").rglob("*.parquet")) if (cache / "overlay").exists() else []


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """An empty tables root and cache, with $DANAS_TABLES / $DANAS_CACHE pointing at them."""
    r, c = tmp_path / "tables", tmp_path / "cache"
    r.mkdir()
    c.mkdir()
    for k, v in danas_env(r, c).items():
        monkeypatch.setenv(k, v)
    return r


@pytest.fixture
def shipped_copy(root) -> Path:
    """The shipped digits/resnet table copied into ``root`` with its MANIFEST entry."""
    man = json.loads((SHIPPED / "MANIFEST").read_text())
    rel = next((k for k, e in man["files"].items() if e.get("pair") == "digits/resnet" and e["kind"] == "table"), None)
    if rel is None or not (SHIPPED / rel).exists():
        pytest.skip("no shipped digits/resnet table")
    (root / rel).parent.mkdir(parents=True)
    shutil.copy(SHIPPED / rel, root / rel)
    (root / "MANIFEST").write_text(json.dumps({"manifest_version": 1, "files": {rel: man["files"][rel]}}))
    return root / rel


# --- open() checks what it loads ------------------------------------------------------------------------


def test_shipped_copy_opens_and_a_bit_flip_in_a_value_page_is_refused(shipped_copy, root):
    bench = db.open("digits/resnet", root, fallback="error")
    arch, value = bench.best("test_acc")
    assert 0 < value <= 1
    flip_bit_in_column(shipped_copy, "valid_acc")
    with pytest.raises(tb.TableError, match=r"resnet-.*\.parquet: sha256 .* differs from the MANIFEST.*same size"):
        db.open("digits/resnet", root, fallback="error")


def test_a_rewritten_value_is_refused(shipped_copy, root):
    t = pq.read_table(shipped_copy)
    acc = t.column("valid_acc").to_numpy().copy()
    acc[0] = 0.999
    t = t.set_column(t.schema.get_field_index("valid_acc"), "valid_acc", [acc.astype(np.float32)])
    pq.write_table(t, shipped_copy, compression="zstd")
    with pytest.raises(tb.TableError, match=r"sha256 .* differs .*bytes, MANIFEST"):
        db.open("digits/resnet", root, fallback="error")


def test_unlisted_tables_are_refused_unless_the_user_opts_in(root):
    write_table(root, "digits/resnet", range(0, 50, 7), listed=False)
    with pytest.raises(tb.TableError, match="not listed in .*MANIFEST.*allow_unlisted=True"):
        db.open("digits/resnet", root, fallback="error")
    bench = db.open("digits/resnet", root, fallback="error", allow_unlisted=True)
    assert bench.query(0, seed=0) > 0


def test_page_checksums_catch_a_flipped_value_in_an_unlisted_table(root):
    path = write_table(root, "digits/resnet", space.canonical_indices()[:400], listed=False)
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).total_compressed_size > 0
    flip_bit_in_column(path, "test_acc")
    bench = db.open("digits/resnet", root, fallback="error", allow_unlisted=True)  # keys read fine
    with pytest.raises(tb.TableError, match="unreadable"):
        bench.best("test_acc")


def _set(col, value, row=0):
    def edit(rows):
        rows[row][col] = value

    return edit


@pytest.mark.parametrize(
    "col, value, match",
    [
        ("arch_index", -5, "arch_index holds 1 impossible"),
        ("valid_acc", 1.5, r"valid_acc holds 1 impossible values \(e.g. 1.5"),
        ("valid_loss", float("inf"), "valid_loss holds 1 impossible"),
        ("test_acc", float("nan"), "test_acc holds 1 impossible"),
        ("train_seconds", -1.0, "train_seconds holds 1 impossible"),
    ],
)
def test_impossible_values_are_refused_at_load(root, col, value, match):
    write_table(root, "digits/resnet", range(0, 30, 3), listed=False, edit=_set(col, value))
    with pytest.raises(tb.TableError, match=match):
        bench = db.open("digits/resnet", root, fallback="error", allow_unlisted=True)
        bench.query_many(bench.archs, col if col in ("valid_acc", "valid_loss", "train_seconds") else "valid_acc")
        bench.test_many(bench.archs, "test_acc")


def test_seeds_outside_the_plan_are_refused(root):
    write_table(root, "digits/resnet", range(0, 30, 3), seeds=(0, 7), meta_extra={"seeds": [0, 1]})
    with pytest.raises(tb.TableError, match=r"holds seeds \[0, 7\] but its plan has seeds \[0, 1\]"):
        db.open("digits/resnet", root, fallback="error")


def test_architecture_facts_file_is_checked_too(root):
    write_table(root, "digits/resnet", [0, 1, 2])
    from danas_bench.tables import archinfo

    facts = archinfo.archs_path(RECIPE, root)
    rows = [
        {"arch_index": 0, "arch": space.arch_str(0), "params": 10, "flops": 20, "latency_ms": 0.1, "is_zero_cell": True}
    ]
    tb.write_atomic(
        tb.to_table(rows, {"recipe_id": RECIPE.recipe_id, "schema_version": tb.SCHEMA_VERSION}, tb.ARCH_SCHEMA), facts
    )
    bench = db.open("digits/resnet", root, fallback="error")
    with pytest.raises(tb.TableError, match="archs-.*not listed"):
        bench.info(0)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not valid JSON"),
        ('{"files": {"digits/x.parquet": {"rows": 3}}}', "has no valid sha256"),
        ('{"manifest_version": 1}', 'no "files" object'),
    ],
)
def test_a_malformed_manifest_is_one_line(root, text, match):
    write_table(root, "digits/resnet", [0, 1, 2])
    (root / "MANIFEST").write_text(text)
    with pytest.raises(tb.TableError, match=match) as err:
        db.open("digits/resnet", root, fallback="error")
    assert "\n" not in str(err.value)
    problems = verify(root, log=lambda *a: None)
    assert len(problems) == 1 and match.split()[0] in problems[0] and "\n" not in problems[0]


# --- verify ----------------------------------------------------------------------------------------------


def test_verify_covers_teachers_unlisted_tables_and_paths_outside_the_root(root, tmp_path):
    make_tables_root(root, datasets=("digits",))
    write_table(root, "digits/resnet", [0, 1, 2])
    out = []
    assert verify(root, out.append) == []
    assert "UNLISTED teachers/digits/resnet.logits.safetensors: not in MANIFEST" in "\n".join(out)
    register_teachers("digits", root)
    out.clear()
    assert verify(root, out.append) == [] and "UNLISTED" not in "\n".join(out)
    logits = root / "teachers" / "digits" / "resnet.logits.safetensors"
    data = bytearray(logits.read_bytes())
    data[-7] ^= 0x01  # a flipped bit in a cached logit
    logits.write_bytes(bytes(data))
    problems = verify(root, out.append)
    assert len(problems) == 1 and problems[0].startswith("teachers/digits/resnet.logits.safetensors: sha256")
    data[-7] ^= 0x01
    logits.write_bytes(bytes(data))
    write_table(root, "digits/none", [0, 1, 2], listed=False)
    (tmp_path / "outside.parquet").write_bytes(b"x")
    man = json.loads((root / "MANIFEST").read_text())
    man["files"]["../outside.parquet"] = {"kind": "table", "sha256": "0" * 64}
    (root / "MANIFEST").write_text(json.dumps(man))
    out.clear()
    problems = verify(root, out.append)
    assert len(problems) == 1 and problems[0].startswith("../outside.parquet: MANIFEST path lies outside")
    assert f"UNLISTED digits/none-{RECIPE.recipe_id}.parquet: not in MANIFEST" in "\n".join(out)


# --- settings are validated before any training --------------------------------------------------------


@pytest.fixture
def live_root(root):
    """digits/none and digits/resnet tables of a few architectures, teachers copied in."""
    make_tables_root(root, datasets=("digits",))
    write_table(root, "digits/none", [1, 2, 3])
    write_table(root, "digits/resnet", [1, 2, 3])
    return root


@pytest.mark.parametrize(
    "kw",
    [
        {"kd_temperature": float("nan")},
        {"kd_temperature": float("inf")},
        {"kd_temperature": 0.0},
        {"kd_temperature": -2.0},
        {"kd_temperature": 1e39},
        {"kd_temperature": "4"},
        {"kd_temperature": True},
        {"kd_alpha": float("nan")},
        {"kd_alpha": 1.5},
        {"kd_alpha": -0.1},
        {"kd_alpha": [0.5]},
        {"seed": 40000},
        {"seed": -1},
        {"seed": 2.0},
        {"seed": True},
    ],
)
def test_invalid_settings_are_refused_before_training(live_root, kw):
    bench = db.open("digits/resnet", live_root, fallback="live")
    with pytest.raises(ValueError, match=r"must be|seed must be"):
        bench.query(500, **kw)
    with pytest.raises(ValueError, match=r"must be|seed must be"):
        bench.query_many([500, 501], **({"seed": 0} | kw))
    assert overlay_files(Path(os.environ["DANAS_CACHE"])) == []  # nothing trained, nothing written


@pytest.mark.parametrize("t", [float("nan"), float("inf"), 0.0, "4"])
def test_kd_and_plans_refuse_invalid_settings(t):
    with pytest.raises(ValueError, match="KD temperature must be a finite number"):
        KD("resnet", t, 0.9)
    with pytest.raises(ValueError, match=r"seeds must be ints in \[0, 32767\]"):
        make_plan("digits/resnet", RECIPE, KD("resnet"), seeds=[0, 40000])
    with pytest.raises(ValueError, match="seeds must be ints"):
        make_plan("digits/resnet", RECIPE, KD("resnet"), seeds=["abc"])


def test_op_lists_are_validated_whether_cached_or_not(live_root):
    bench = db.open("digits/resnet", live_root, fallback="error")
    ops = list(space.index_to_ops(1))
    assert bench.query(ops, seed=0) == bench.query(1, seed=0)  # cached now
    for bad in ([float(o) for o in ops], [bool(o) if o < 2 else o for o in ops]):
        if bad == ops and all(type(o) is int for o in bad):
            continue
        with pytest.raises(ValueError, match="op list entry"):
            bench.query(bad, seed=0)
    bench.query(1, "valid_acc", epoch=2, seed=0)
    with pytest.raises(ValueError, match="epoch must be"):
        bench.query(1, "valid_acc", epoch=2.0, seed=0)  # 2.0 == 2 as a cache key
    with pytest.raises(ValueError, match="out of range"):
        bench.query_many([10**30])
    with pytest.raises(ValueError, match="max_queries must be"):
        Budget(max_queries=float("inf"))


def test_live_rows_need_the_tables_data(live_root):
    path = table_path("digits/none", RECIPE.recipe_id, live_root)
    t = pq.read_table(path)
    meta = json.loads(t.schema.metadata[tb.META_KEY])
    meta["split_hashes"] = {**meta["split_hashes"], "valid": "0" * 64}
    tb.write_atomic(t.replace_schema_metadata({tb.META_KEY: json.dumps(meta).encode()}), path)
    update_manifest(
        path, live_root, kind="table", extra={"pair": "digits/none", "recipe_id": RECIPE.recipe_id, "sampled": True}
    )
    bench = db.open("digits/none", live_root, fallback="live")
    with pytest.raises(tb.TableError, match=r"data here differs from the table's \(split hashes of \['valid'\]"):
        bench.query(500, seed=0)
    assert overlay_files(Path(os.environ["DANAS_CACHE"])) == []


# --- the overlay recovers from a damaged file ----------------------------------------------------------


def test_a_damaged_overlay_file_is_skipped_retrained_and_compacted_away(live_root):
    cache = Path(os.environ["DANAS_CACHE"])
    arch = 500  # not in the table
    ov = Overlay("digits/none", RECIPE.recipe_id)
    rows = [{**r, "source": "live"} for r in records("digits/none", [arch, 501], rng_seed=3)]
    bad = ov.append(rows, RECIPE.to_dict(), dict(KD("none").__dict__))
    flip_bit_in_column(bad, "valid_acc")  # keys still read, values do not
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench = db.open("digits/none", live_root, fallback="live")
        v = bench.query(arch, seed=0)  # trains it again, for real
        assert 0 <= v <= 1 and bench.query(arch, seed=0) == v
    damaged = [w for w in caught if "damaged overlay file skipped" in str(w.message)]
    assert len(damaged) == 1, [str(w.message) for w in caught]
    assert bench.record(arch, seed=0)["source"] == "live"
    assert len(overlay_files(cache)) == 2
    # a fresh process sees the same: the retrained row answers, the damaged file is skipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert db.open("digits/none", live_root, fallback="error").query(arch, seed=0) == v
        kept = Overlay("digits/none", RECIPE.recipe_id).compact()
    assert kept is not None and overlay_files(cache) == [kept]
    assert bad.with_name(bad.name + ".corrupt").exists() and not bad.exists()
    assert db.open("digits/none", live_root, fallback="error").query(arch, seed=0) == v


def test_the_overlay_never_caches_impossible_rows(root):
    ov = Overlay("digits/none", RECIPE.recipe_id)
    rows = records("digits/none", [500])
    rows[0]["train_loss"] = [float("nan")] * RECIPE.epochs
    with pytest.raises(tb.TableError, match="train_loss holds"):
        ov.append(rows, RECIPE.to_dict(), dict(KD("none").__dict__))
    assert ov.files() == []


# --- generation keeps other writers' temp files ---------------------------------------------------------

WRITER = """
import sys, time, os
from pathlib import Path
import pyarrow as pa
from danas_bench.core import schema as tb
path = Path(sys.argv[1])
tmp = tb.temp_path(path)
tmp.write_bytes(b"half-written shard")
Path(sys.argv[2]).write_text("written")
while not Path(sys.argv[3]).exists():
    time.sleep(0.05)
os.replace(tmp, path)
"""


def test_a_restart_keeps_a_live_writers_temp_file(root, tmp_path):
    plan = make_plan("digits/none", RECIPE, KD("none"), seeds=[0], archs=4, shard_size=2)
    d = shard_dir(plan.pair, plan.recipe_id, root)
    save_plan(plan, d)
    shard = shard_path(d, 0)
    ready, go = tmp_path / "ready", tmp_path / "go"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(shard), str(ready), str(go)])
    try:
        for _ in range(600):
            if ready.exists() or writer.poll() is not None:
                break
            import time

            time.sleep(0.05)
        assert ready.exists(), "the writer did not start"
        dead = d / ".shard-00001.parquet.tmp-nosuchhost-1"  # another host's, old: a dead writer's
        dead.write_bytes(b"torn")
        os.utime(dead, (0, 0))
        mine_dead = tb.temp_path(shard_path(d, 1)).with_name(
            tb.temp_path(shard_path(d, 1)).name.rsplit("-", 1)[0] + "-999999999"
        )
        mine_dead.write_bytes(b"torn")  # this host, a pid that does not run
        g.run_pending(plan, d, executor="debug", max_shards=0, log=lambda *a: None)  # the restart
        assert not dead.exists() and not mine_dead.exists()
        go.write_text("go")
        assert writer.wait(timeout=60) == 0  # its rename worked: the temp file was still there
    finally:
        if writer.poll() is None:
            writer.kill()
    assert shard.read_bytes() == b"half-written shard"


# --- the native kernel cache ------------------------------------------------------------------------------


@pytest.fixture
def native_cache(tmp_path, monkeypatch):
    from danas_bench.training import native

    monkeypatch.delenv("DANAS_NATIVE", raising=False)
    monkeypatch.setenv("DANAS_NATIVE_CACHE", str(tmp_path / "native"))
    native._lib.cache_clear()
    if not native.available():
        pytest.skip("no C compiler here")
    yield tmp_path / "native"
    monkeypatch.undo()
    native._lib.cache_clear()


def test_a_planted_or_corrupt_library_is_rebuilt(native_cache):
    from danas_bench.training import native

    (so,) = native_cache.glob("*/conv3.so")
    assert oct(native_cache.stat().st_mode & 0o777) == "0o700" and oct(so.parent.stat().st_mode & 0o777) == "0o700"
    recorded = so.with_name("conv3.so.sha256").read_text().strip()
    planted = so.with_name("planted")
    planted.write_bytes(b"\x7fELF planted")  # what someone else put there, or a torn file
    os.replace(planted, so)  # (renamed in: the loaded library's mapping stays intact)
    native._lib.cache_clear()
    assert native.available()
    assert so.read_bytes() != b"\x7fELF planted" and native._sha256(so) == recorded


def test_a_cache_others_can_write_is_refused(native_cache):
    from danas_bench.training import native

    os.chmod(native_cache, 0o777)
    native._lib.cache_clear()
    with pytest.warns(UserWarning, match=r"cache refused: .* writable by others .*chmod 700"):
        assert not native.available()
    os.chmod(native_cache, 0o700)
    if os.getuid() == 0:  # as root the test can hand the folder to another user
        os.chown(native_cache, 65534, 65534)
        native._lib.cache_clear()
        with pytest.warns(UserWarning, match="belongs to another user"):
            assert not native.available()
        os.chown(native_cache, 0, 0)


# --- the CLI fails with one line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, match",
    [
        (["generate", "shard_size=0"], r"shard_size must be >= 1 \(an int\), got 0"),
        (["generate", "seeds=[abc]"], r"seeds must be ints in \[0, 32767\]"),
        (["generate", "pair=digits/resnet", "kd.temperature=nan"], "KD temperature must be a finite number"),
        (["generate", "seeds=["], "key=value"),
        (["generate", "no_such_key=1"], "Could not override 'no_such_key'"),
        (["query", "9417.0", "pair=digits/none"], "cannot read an architecture from a float"),
        (["query", "1", "pair=digits/none", "seed=99999"], r"seed must be .* in \[0, 32767\]"),
        (["verify"], "not valid JSON"),
    ],
)
def test_cli_errors_are_one_line(live_root, capsys, argv, match):
    if argv == ["verify"]:
        (live_root / "MANIFEST").write_text("{")
    rc = cli.main(argv, one_line_errors=True)
    captured = capsys.readouterr()
    err = captured.err.strip()
    if argv == ["verify"]:  # verify reports problems on stdout, one line each, and exits 1
        out = captured.out.strip()
        assert rc == 1 and len(out.splitlines()) == 1 and "Traceback" not in out + err, out + err
        assert out.startswith("FAIL ") and match in out, out
        return
    assert rc == 2 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"danas-bench {argv[0]}: "), err
    import re

    assert re.search(match, err), err
    assert not (live_root / "shards").exists()  # nothing planned, nothing trained


def test_the_command_prints_one_line_and_no_traceback(live_root, danas_cli):
    res = danas_cli("generate", "shard_size=0", "pair=digits/none")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "shard_size must be >= 1 (an int)" in res.stderr
    res = danas_cli("--debug", "generate", "shard_size=0", "pair=digits/none")
    assert res.returncode == 1 and "Traceback" in res.stderr


def test_cli_json_is_valid_with_nan_metrics(live_root, capsys):
    assert cli.main(["query", "1", "pair=digits/none", "metric=valid_kl_teacher", "fallback=error"]) == 0
    out = json.loads(capsys.readouterr().out)  # strict: no NaN
    assert out["value"] is None
    assert cli.main(["query", "1", "pair=digits/none", "fallback=error", "info=false"]) == 0
    rec = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert rec["valid_kl_teacher"] is None and 0 <= rec["valid_acc"] <= 1
