"""Tier L (CIFAR-10 / CIFAR-100): binary-archive loaders on a generated fixture in the exact layout, the
engine's device-agnostic path, and the GPU-cluster dry run. Real CUDA runs only where a GPU is present."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from danas_bench.core import space
from danas_bench.core.pairs import TEACHERS
from danas_bench.core.recipe import KD, Recipe
from danas_bench.training import data, engine, native
from danas_bench.training.fused import FusedStudents
from danas_bench.training.fused_ops import _Conv, uses_native

N_TRAIN, N_TEST = 60, 12  # records in the fixture's train files and its test file (official: 50,000 + 10,000)


def _fixture(root: Path, name: str, seed: int = 0) -> dict:
    """Write a small archive in the official binary layout; return what was written."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    if name == "cifar10":
        labels = rng.integers(0, 10, n, dtype=np.uint8)
    else:
        fine = rng.integers(0, 100, n, dtype=np.uint8)
        labels = np.stack([fine // 5, fine], 1)  # (coarse, fine) per record
    data.write_cifar_binary(root, name, images, labels, N_TEST)
    return {"images": images, "labels": labels}


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DANAS_DATA", str(tmp_path))
    monkeypatch.setattr(data, "CIFAR_DIRS", ())  # only the fixture, never a system copy
    data.load.cache_clear()
    written = {name: _fixture(tmp_path, name, seed) for seed, name in enumerate(("cifar10", "cifar100"))}
    yield tmp_path, written
    data.load.cache_clear()


def test_fixture_is_the_official_byte_layout(cifar_root):
    root, written = cifar_root
    d10 = root / "cifar-10-batches-bin"
    assert sorted(p.name for p in d10.iterdir()) == [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]
    raw = (d10 / "test_batch.bin").read_bytes()
    assert len(raw) == N_TEST * 3073
    first = written["cifar10"]["images"][N_TRAIN]
    assert raw[0] == written["cifar10"]["labels"][N_TRAIN]
    assert raw[1:1025] == first[0].tobytes() and raw[2049:3073] == first[2].tobytes()  # red plane, blue plane
    raw100 = (root / "cifar-100-binary" / "train.bin").read_bytes()
    assert len(raw100) == N_TRAIN * 3074
    assert tuple(raw100[:2]) == tuple(written["cifar100"]["labels"][0])  # coarse byte, then fine byte


@pytest.mark.filterwarnings("ignore:.*the official archive has")
@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_loaders_read_the_binary_records(cifar_root, name, classes):
    _, written = cifar_root
    ds = data.load(name)
    n = N_TRAIN + N_TEST
    assert ds.name == name and ds.num_classes == classes and ds.shape == (3, 32, 32) and ds.ndim == 2
    assert ds.sizes() == {"train": n - n // 12 - n // 6, "valid": n // 12, "test": n // 6}
    assert set(ds.split_hashes) == {"train", "valid", "test"} and len(set(ds.split_hashes.values())) == 3
    # standardised per colour channel on train
    x = ds.x["train"]
    assert x.dtype == torch.float32
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3)), torch.ones(3), atol=1e-2)
    # every split's (image, label) pairs are records of the archive, each record used once
    labels = written[name]["labels"]
    fine = labels if labels.ndim == 1 else labels[:, 1]
    by_image = {img.tobytes(): int(lab) for img, lab in zip(written[name]["images"], fine)}
    perm = np.random.default_rng(data.SPLIT_SEED).permutation(n)
    seen = []
    for split, start in (
        ("train", 0),
        ("valid", ds.sizes()["train"]),
        ("test", ds.sizes()["train"] + ds.sizes()["valid"]),
    ):
        src = written[name]["images"][perm[start : start + ds.sizes()[split]]]
        assert [by_image[i.tobytes()] for i in src] == ds.y[split].tolist()
        seen += list(perm[start : start + ds.sizes()[split]])
    assert sorted(seen) == list(range(n))


@pytest.mark.filterwarnings("ignore:.*the official archive has")
def test_cifar100_coarse_labels(cifar_root):
    _, written = cifar_root
    fine, coarse = data.load("cifar100"), data._cifar("cifar100", labels="coarse")
    assert coarse.name == "cifar100-coarse" and coarse.num_classes == 20
    assert torch.equal(coarse.y["train"], fine.y["train"] // 5)  # the fixture's coarse byte is fine // 5
    assert torch.equal(coarse.x["test"], fine.x["test"])
    assert coarse.split_hashes != fine.split_hashes  # the labels are hashed too
    with pytest.raises(ValueError, match="labels must be 'fine'"):
        data._cifar("cifar10", labels="coarse")


@pytest.mark.filterwarnings("ignore:.*the official archive has")
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_split_hashes_are_stable(cifar_root, name):
    h = data.load(name).split_hashes
    data.load.cache_clear()
    assert data.load(name).split_hashes == h
    # pinned: the split seed, the split rule and the hashing must not drift without a new table version
    digest = hashlib.sha256("".join(h[s] for s in ("train", "valid", "test")).encode()).hexdigest()[:12]
    assert digest == {"cifar10": "498128a2f1b2", "cifar100": "49fbcacfc4ce"}[name]


def test_a_short_archive_warns_that_its_splits_differ(cifar_root):
    data.load.cache_clear()
    with pytest.warns(UserWarning, match="the official archive has 60000"):
        data.load("cifar10")


def test_missing_files_say_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("DANAS_DATA", str(tmp_path))
    monkeypatch.setattr(data, "CIFAR_DIRS", ())
    data.load.cache_clear()
    for name, expect in (
        ("cifar10", "cifar-10-batches-bin/data_batch_1.bin"),
        ("cifar100", "cifar-100-binary/train.bin"),
    ):
        with pytest.raises(FileNotFoundError) as err:
            data.load(name)
        msg = str(err.value)
        assert expect in msg and str(tmp_path) in msg and "DANAS_DATA" in msg and "binary" in msg
    # one file short: the message names it
    _fixture(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing there: cifar-10-batches-bin/data_batch_3\.bin\."):
        data.cifar_dir("cifar10")


def test_a_torn_file_is_refused(cifar_root):
    root, _ = cifar_root
    f = root / "cifar-10-batches-bin" / "data_batch_2.bin"
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(ValueError, match="not a whole number of 3073-byte records"):
        data.load("cifar10")


def test_labels_out_of_range_are_refused(cifar_root):
    root, written = cifar_root
    f = root / "cifar-10-batches-bin" / "test_batch.bin"  # a CIFAR-100 record read as CIFAR-10
    raw = bytearray(f.read_bytes())
    raw[0] = 57
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="label 57 out of range for 10 classes"):
        data.load("cifar10")


def test_no_pickle_on_the_load_path():
    import inspect

    src = inspect.getsource(data)
    for unsafe in ("import pickle", "allow_pickle=True", "torch.load(", "np.load(path", "unpickl"):
        assert unsafe not in src


# --- the engine on any device ---------------------------------------------------------------------


TINY = {"width": 4, "epochs": 1, "batch_size": 32}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/tier_l_gpu.sh runs these)")


@pytest.fixture(scope="module")
def archs():
    rng = np.random.default_rng(11)
    return list(space.sample(rng, 4, canonical_only=True)) + [space.to_index([3] * 6), space.to_index([4] * 6)]


def _strip_clock(recs):
    return [{k: v for k, v in r.items() if k not in ("train_seconds", "epoch_seconds")} for r in recs]


def test_explicit_cpu_device_is_the_default_path(archs):
    r = Recipe("mnist1d", **TINY, n_train=96)
    default = engine.train_many(archs[:3], 0, engine.Task.make(r, KD("none")))
    explicit = engine.train_many(archs[:3], 0, engine.Task.make(r, KD("none"), device="cpu"))
    assert _strip_clock(default) == _strip_clock(explicit)  # bit for bit


def test_native_kernels_are_the_cpu_path_only():
    assert not uses_native(1, 3, 1, "cuda") and not uses_native(1, 3, 1, torch.device("meta"))
    assert uses_native(1, 3, 1, "cpu") == native.available()
    conv = torch.nn.Conv1d(4, 4, 3, 1, 1, bias=False)
    c = _Conv([conv, conv], [torch.nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4)], 1)
    cpu = torch.zeros(1, 8, 2, 5)
    assert c._native(cpu) == native.available()
    assert not c._native(cpu.to("meta")) and not c._native(cpu.to(torch.bfloat16))


@pytest.mark.parametrize("dataset, shape", [("mnist1d", (1, 40)), ("cifar", (3, 32, 32))])
def test_fused_training_step_runs_off_the_cpu(archs, dataset, shape):
    """The whole fused forward and hand-written backward on the 'meta' device (shapes only): any tensor the
    engine made on the CPU, or any C kernel call, would fail here, as it would on a GPU."""
    ndim = len(shape) - 1
    from danas_bench.training.student import build

    students = [build(a, 0, shape[0], 10, ndim, width=4) for a in archs]
    model = FusedStudents(students).to("meta")
    x = torch.empty(6, *shape, device="meta")
    out = model(x)
    assert out.shape == (6, len(archs), 10) and out.device.type == "meta"
    out.sum().backward()
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.inference_mode():
        assert model(x).shape == (6, len(archs), 10)


def test_check_device_says_what_is_wrong():
    with pytest.raises(ValueError, match="'cpu', 'cuda'"):
        engine.check_device("tpu0")
    with pytest.raises(ValueError, match="runs on 'cpu' or 'cuda'"):
        engine.check_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible.*CUDA build of torch"):
            engine.check_device("cuda")


def test_autocast_is_a_late_recipe_field():
    r = Recipe("mnist1d", width=4)
    assert "autocast" not in r.to_dict()  # unset: the ids of every existing recipe are unchanged
    assert r.replace(autocast="bf16").recipe_id != r.recipe_id
    assert Recipe.from_dict({**r.to_dict(), "autocast": "bf16"}).autocast == "bf16"
    with pytest.raises(ValueError, match="autocast must be null or one of bf16"):
        Recipe("mnist1d", autocast="fp16")


@pytest.mark.filterwarnings("ignore:.*the official archive has")
def test_bf16_autocast_trains_on_cpu_close_to_float32(cifar_root, archs):
    """bf16 on the CPU (the same code a GPU runs): fused and plain agree with float32 to bf16's precision."""
    r = Recipe("cifar10", **TINY)
    t32 = engine.Task.make(r, KD("none"))
    t16 = engine.Task.make(r.replace(autocast="bf16"), KD("none"))
    a = engine.train_many(archs[:2], 0, t32)
    b = engine.train_many(archs[:2], 0, t16)
    p = engine.train_plain(archs[0], 0, t16)
    for x32, x16 in zip(a, b):
        assert x16["recipe_id"] == t16.recipe.recipe_id != x32["recipe_id"]
        assert np.isfinite(x16["train_loss"]).all()
        assert abs(x16["train_loss"][0] - x32["train_loss"][0]) < 0.05 * x32["train_loss"][0]
    assert abs(p["train_loss"][0] - b[0]["train_loss"][0]) < 0.05 * b[0]["train_loss"][0]


@pytest.mark.filterwarnings("ignore:.*the official archive has")
def test_engine_trains_colour_images(cifar_root, archs):
    """3-channel 32 x 32 inputs through the fused engine and the plain loop: same model, same answers."""
    task = engine.Task.make(Recipe("cifar10", **TINY), KD("none"))
    students = engine._students(archs, 3, task)
    fused = FusedStudents(students)
    x = task.dataset.x["train"][:8]
    with torch.no_grad():
        torch.testing.assert_close(fused(x), torch.stack([s(x) for s in students], 1), rtol=1e-4, atol=1e-4)
    recs = engine.train_many(archs[:2], 0, task)
    plain = engine.train_plain(archs[0], 0, task)
    assert len(recs) == 2 and recs[0]["train_loss"][0] == pytest.approx(plain["train_loss"][0], rel=1e-3)


@CUDA
@pytest.mark.filterwarnings("ignore:.*the official archive has")
@pytest.mark.parametrize("autocast", [None, "bf16"])
def test_cuda_engine_matches_the_cpu(cifar_root, archs, autocast):
    r = Recipe("cifar10", **TINY, autocast=autocast)
    cpu = engine.train_many(archs, 0, engine.Task.make(r, KD("none")))
    gpu = engine.train_many(archs, 0, engine.Task.make(r, KD("none"), device="cuda"))
    plain = engine.train_plain(archs[0], 0, engine.Task.make(r, KD("none"), device="cuda"))
    tol = 1e-3 if autocast is None else 0.05
    for c, g in zip(cpu, gpu):
        assert g["train_loss"][0] == pytest.approx(c["train_loss"][0], rel=tol)
        assert g["train_seconds"] > 0
    assert plain["train_loss"][0] == pytest.approx(gpu[0]["train_loss"][0], rel=tol)


# --- teachers, recipes and the cluster dry run ----------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_tier_l_recipes_and_teachers_are_registered(dataset):
    from danas_bench.core.recipe import RECIPE_DIR, recipe_for
    from danas_bench.training import teachers

    assert "PROVISIONAL" in (RECIPE_DIR / f"{dataset}.yaml").read_text()  # says it was not chosen by a search
    r = recipe_for(dataset)
    assert r.dataset == dataset and r.autocast is None
    fams = TEACHERS[dataset]
    assert "resnet" in fams and len(fams) >= 2 and all(f in teachers.FAMILIES for f in fams)


def test_vit_teacher_on_colour_images():
    from danas_bench.training import teachers

    ds = data.Dataset("cifar10", {"train": torch.zeros(2, 3, 32, 32)}, {"train": torch.zeros(2, dtype=torch.long)}, 10)
    model = teachers.make("vit", ds)
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)
    with pytest.raises(ValueError, match="2-D network"):
        teachers.make("vit", data.Dataset("x", {"train": torch.zeros(2, 1, 40)}, {}, 10))


def test_gpu_cluster_dry_run_needs_no_data_no_teachers_no_slurm(tmp_path):
    """`generate ... executor=gpu_cluster dry_run=true` exits 0 on a machine without the dataset, the
    teachers and SLURM, prints the plan, where inputs go, a labelled estimate and an sbatch script
    that requests a GPU; it writes nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ("DANAS_DATA",)}
    env.update(DANAS_TABLES=str(tmp_path / "tables"), DANAS_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "danas_bench.cli",
            "generate",
            "pair=cifar10/resnet",
            "executor=gpu_cluster",
            "dry_run=true",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "DRY RUN" in out and "51 shards of <= 128" in out and "array size 51" in out
    assert "1 GPU(s) per task" in out and "time limit 240 min" in out
    assert "PROVISIONAL" in out and "ESTIMATE, NOT MEASURED" in out and "GPU-hours" in out
    assert "cifar-10-batches-bin/data_batch_1.bin" in out and "NOT present here" in out
    assert "NOT TRAINED YET" in out and "danas-bench teachers dataset=cifar10" in out
    script = out[out.index("#!/bin/bash") :]
    assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --array=0-50%8" in script
    assert "#SBATCH --partition=gpu" in script and "submitit.core._submit" in script
    assert not (tmp_path / "tables").exists() and list(tmp_path.iterdir()) in ([], [tmp_path / "cache"])


@pytest.mark.filterwarnings("ignore:.*the official archive has")
def test_throughput_takes_a_device(cifar_root, tmp_path):
    import json

    from danas_bench.reports import throughput

    out = tmp_path / "t.json"
    assert (
        throughput.main(
            [
                "--datasets",
                "cifar10",
                "--n",
                "3",
                "--chunk",
                "3",
                "--teacher",
                "none",
                "--epochs",
                "1",
                "--n-train",
                "32",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (res,) = json.loads(out.read_text())
    assert res["dataset"] == "cifar10" and res["recipe"]["epochs"] == 1 and "device" not in res  # CPU: no device fields
    assert res["engine_seconds"] > 0 and res["train_gflop_per_arch"] > 0
    with pytest.raises(SystemExit):
        throughput.main(["--device", "tpu"])


def test_dry_run_refuses_the_array_settings_a_submission_refuses():
    from danas_bench.tables import cluster

    assert cluster.array_limits({}) == (1000, 1)
    assert cluster.array_limits({"max_array_size": 64, "shards_per_task": 4}) == (64, 4)
    with pytest.raises(ValueError, match="executor.max_array_size must be >= 1, got 0"):
        cluster.array_limits({"max_array_size": 0})
    with pytest.raises(ValueError, match="executor.shards_per_task must be >= 1, got -2"):
        cluster.array_limits({"shards_per_task": -2})
