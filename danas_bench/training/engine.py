"""The training engine: distil (or plainly train) students with one recipe, one or many at a time.

:func:`train_many` is the throughput engine used by table generation and the live fallback: it
trains K architectures of one seed as one :class:`~danas_bench.training.fused.FusedStudents`. :func:`train_plain`
is the baseline it is measured against: the plain one-architecture PyTorch loop, DataLoader-free,
with the same recipe, the same initial weights and the same minibatch order. Both go through
:func:`fit`, so recipe, loss and metrics are one piece of code.

A run's randomness: the minibatch order depends on ``seed`` only (so architectures of one seed can
share batches); the initial weights depend on (architecture index, seed) via
:func:`danas_bench.training.student.init_seed`.

Devices: a :class:`Task` runs on ``device`` (default ``"cpu"``, one thread per process; tier L: ``"cuda"``).
Models are built on the CPU (same initial weights everywhere) and moved; the batch order comes from a CPU
generator on every device, and metrics are computed on the CPU, so a CPU run gives the same bits
whatever device support is compiled in. On a GPU the recorded seconds are wall seconds of the device (synchronised), not
process CPU seconds. A recipe with ``autocast: bf16`` runs the forward (and the fused engine's
convolution backward) in bfloat16 on any device; it is part of the recipe id.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from danas_bench.core import space
from danas_bench.core.recipe import KD, Recipe
from danas_bench.training import data as data_mod
from danas_bench.training import teachers
from danas_bench.training.fused import FusedStudents, Single, parameter_owners
from danas_bench.training.student import build

ECE_BINS = 15


@dataclass
class Task:
    """Everything a run needs besides the architectures: data, teacher logits, recipe, KD setting."""

    dataset: data_mod.Dataset
    recipe: Recipe
    kd: KD
    teacher_logits: dict[str, torch.Tensor] | None
    device: str = "cpu"  # where the students train ("cpu", "cuda", "cuda:1", ...); the data stays on the CPU

    @classmethod
    def make(cls, recipe: Recipe, kd: KD, device: str = "cpu") -> Task:
        dev = check_device(device)
        ds = data_mod.load(recipe.dataset)
        tl = None if kd.teacher == "none" else teachers.logits(recipe.dataset, kd.teacher)
        return cls(ds, recipe, kd, tl, str(dev))

    def train_split(self):
        x, y = self.dataset.x["train"], self.dataset.y["train"]
        t = None if self.teacher_logits is None else self.teacher_logits["train"]
        n = self.recipe.n_train
        if n is not None:
            x, y, t = x[:n], y[:n], (None if t is None else t[:n])
        return x, y, t


def check_device(device) -> torch.device:
    """A device this process can train on; ValueError saying why not (no CUDA build, no GPU visible)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<n>', got {device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = torch.version.cuda or "a CPU-only build"
            raise ValueError(
                f"device {device!r}: no CUDA GPU is visible to this process (torch {torch.__version__}, "
                f"{build}); install the CUDA build of torch (docs/cluster.md) and run on a GPU node"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) visible")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: the engine runs on 'cpu' or 'cuda'")
    return dev


def _clock(device: torch.device):
    """The run's clock: process CPU seconds on the CPU (core-seconds, robust to other jobs); wall seconds
    after synchronising the device elsewhere (the GPU's time; its host thread mostly waits)."""
    if device.type == "cpu":
        return time.process_time

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return clock


def _autocast(r: Recipe, device: torch.device):
    """The recipe's mixed precision for a forward pass, or nothing (float32)."""
    if r.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _loss(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, kd: KD):
    """Sum over models of each model's mean loss; per-model losses for logging. logits: (B, K, C)."""
    b, k, c = logits.shape
    ce = F.cross_entropy(logits.reshape(b * k, c), y.repeat_interleave(k), reduction="none").reshape(b, k)
    per_model = ce.mean(0)
    if t is None or kd.alpha == 0.0:
        return per_model.sum(), per_model.detach()
    temp = kd.temperature
    log_s = F.log_softmax(logits / temp, -1)
    p_t = F.softmax(t / temp, -1).unsqueeze(1)
    kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_s)).sum(-1).mean(0)  # (K,)
    per_model = kd.alpha * temp * temp * kl + (1.0 - kd.alpha) * per_model
    return per_model.sum(), per_model.detach()


# on the CPU, an evaluation batch of about this many input positions keeps a fused model's activations in
# cache: 32 images of 28x28 (fashion-mnist's eval 1.5x faster than at 128), while mnist1d's 40 and digits'
# 64 positions take the cap of 128 (docs/performance.md)
EVAL_POSITIONS = 32 * 28 * 28


def eval_batch(device: torch.device, sample_shape: tuple[int, ...]) -> int:
    """The evaluation batch size for inputs of ``sample_shape`` (channels first) on ``device``: a GPU wants
    large batches (1024); on the CPU the largest power of two from 16 to 128 whose batch holds at most
    ``EVAL_POSITIONS`` input positions. Eval-mode logits do not depend on it (bit-identical, tests)."""
    if torch.device(device).type != "cpu":
        return 1024
    positions = math.prod(sample_shape[1:])
    bs = 128
    while bs > 16 and bs * positions > EVAL_POSITIONS:
        bs //= 2
    return bs


@torch.inference_mode()
def _predict(model: nn.Module, x: torch.Tensor, bs: int = 128, amp=contextlib.nullcontext) -> torch.Tensor:
    """Eval-mode float32 logits (N, K, C) in batches of ``bs`` (:func:`eval_batch`: batches small enough
    to keep a fused model's activations in cache); inference mode (no autograd bookkeeping at all) is
    ~5% faster than ``no_grad``. ``x`` may live on the CPU: each batch is moved to the model's device;
    ``amp`` makes the recipe's autocast context."""
    model.eval()
    dev = next(model.parameters()).device
    outs = []
    for i in range(0, len(x), bs):
        with amp():
            outs.append(model(x[i : i + bs].to(dev)).float())
    model.train()
    return torch.cat(outs)  # (N, K, C)


def ece(probs: torch.Tensor, y: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """Expected calibration error per model; probs (N, K, C), y (N,) -> (K,)."""
    conf, pred = probs.max(-1)
    correct = (pred == y[:, None]).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf, edges[1:-1])  # (N, K) in [0, bins)
    out = torch.zeros(probs.shape[1])
    for b in range(bins):
        m = (which == b).float()
        cnt = m.sum(0)
        gap = ((conf * m).sum(0) - (correct * m).sum(0)).abs()
        out += torch.where(cnt > 0, gap, torch.zeros_like(gap))
    return out / len(y)


def _split_metrics(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> dict[str, np.ndarray]:
    b, k, c = logits.shape
    out = {
        "acc": (logits.argmax(-1) == y[:, None]).float().mean(0),
        "loss": F.cross_entropy(logits.reshape(b * k, c), y.repeat_interleave(k), reduction="none")
        .reshape(b, k)
        .mean(0),
        "ece": ece(F.softmax(logits, -1), y),
    }
    if t is not None:
        log_s = F.log_softmax(logits, -1)
        p_t = F.softmax(t, -1).unsqueeze(1)
        out["kl_teacher"] = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_s)).sum(-1).mean(0)
        out["agreement"] = (logits.argmax(-1) == t.argmax(-1)[:, None]).float().mean(0)
    return {key: v.cpu().numpy().astype(np.float64) for key, v in out.items()}


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks in the heap instead of returning them to the OS.

    By default blocks over 128 KB are ``mmap``-ed and unmapped again, and the heap top is trimmed, so a
    fused model's activations (megabytes, freed every step) are page-faulted in afresh every training
    step (~2,500 faults a step for 64 mnist1d students). Raising the thresholds keeps them
    allocated; the plain loop's tensors are smaller than the default threshold, so this mainly
    helps the engine (docs/performance.md). It is process-wide: a process keeps up to 1 GB of freed
    memory for reuse. A no-op where the C library is not glibc, under a preloaded allocator (jemalloc,
    tcmalloc: their own policy applies), and with ``DANAS_MALLOPT=0``.
    """
    import ctypes
    import ctypes.util
    import os

    if os.environ.get("DANAS_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30))


def optimizer(model: nn.Module, r: Recipe, fused: bool = False) -> torch.optim.Optimizer:
    """The recipe's SGD. ``fused``: PyTorch's fused SGD kernel, one call for all parameters instead of
    several small ops per parameter (a fused model has ~80 parameter tensors), 3-5x faster on this CPU
    (docs/performance.md); the same updates up to the last bit of the elements past a multiple of 8 in
    each tensor (its scalar tail). The engine uses it; the plain loop keeps PyTorch's default, as a
    researcher's own script would."""
    return torch.optim.SGD(
        model.parameters(),
        lr=r.lr,
        momentum=r.momentum,
        nesterov=True,
        weight_decay=r.weight_decay,
        fused=fused or None,
    )


def lr_schedule(opt: torch.optim.Optimizer, r: Recipe, n: int):
    """Cosine to 0 over all steps (NAS-Bench-201's schedule), after a linear warmup from 0 over
    ``warmup_epochs`` when the recipe asks for one: KD's T^2-scaled soft loss at a high learning rate
    can collapse tiny students in their first steps (docs/pilot.md)."""
    per_epoch = (n + r.batch_size - 1) // r.batch_size
    steps = r.epochs * per_epoch
    if not r.warmup_epochs:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    warm = r.warmup_epochs * per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class ClipPerStudent:
    """``torch.nn.utils.clip_grad_norm_`` for each student of a fused model on its own: each student's
    whole gradient is scaled by min(1, max_norm / (its L2 norm + 1e-6)), so one student's large step
    never shrinks another's. ``owners`` maps each parameter row to its student (k + 1; 0: no one,
    :func:`~danas_bench.training.fused.parameter_owners`)."""

    def __init__(self, params, owners: list[torch.Tensor], k: int, max_norm: float):
        self.pairs = [(p, o.to(p.device)) for p, o in zip(params, owners, strict=True)]
        self.k, self.max_norm = k, float(max_norm)

    def norms(self) -> torch.Tensor:
        """Each student's gradient L2 norm, shape (k,)."""
        p0 = self.pairs[0][0]
        sq = torch.zeros(self.k + 1, device=p0.device, dtype=torch.promote_types(p0.dtype, torch.float32))
        for p, o in self.pairs:
            if p.grad is not None:
                sq.index_add_(0, o, p.grad.reshape(len(o), -1).to(sq.dtype).square().sum(1))
        return sq[1:].sqrt()

    def __call__(self) -> None:
        coef = (self.max_norm / (self.norms() + 1e-6)).clamp_(max=1.0)
        coef = torch.cat([coef.new_ones(1), coef])
        for p, o in self.pairs:
            if p.grad is not None:
                p.grad.mul_(coef[o].reshape(-1, *[1] * (p.dim() - 1)).to(p.grad.dtype))


def fit(
    model: nn.Module,
    k: int,
    task: Task,
    seed: int,
    progress=None,
    fused_optimizer: bool = False,
    owners: list[torch.Tensor] | None = None,
) -> dict:
    """Train ``model`` (logits (B, K, C)) with the task's recipe; return per-model arrays. ``owners``: which
    of the K students each parameter row belongs to, needed when the recipe clips gradients (``None``:
    a single student owns them all)."""
    keep_freed_memory()
    r, kd = task.recipe, task.kd
    dev = torch.device(task.device)
    x, y, t = task.train_split()
    n = len(x)
    if dev.type != "cpu":  # the training split lives on the device; batches are gathered there
        x, y, t = x.to(dev), y.to(dev), (None if t is None else t.to(dev))
    clock = _clock(dev)
    amp = functools.partial(_autocast, r, dev)
    opt = optimizer(model, r, fused_optimizer)
    sched = lr_schedule(opt, r, n)
    clip = None
    if r.grad_clip is not None:
        params = list(model.parameters())
        if owners is None and k > 1:
            raise ValueError("a recipe with grad_clip trains K > 1 students only with their owner map (owners=)")
        owners = owners if owners is not None else [torch.ones(len(p), dtype=torch.long) for p in params]
        clip = ClipPerStudent(params, owners, k, r.grad_clip)
    gen = torch.Generator().manual_seed(int(seed))
    hist = {"train_loss": [], "train_acc": [], "valid_acc": [], "epoch_seconds": []}
    # the per-epoch curve may use a prefix of the valid split (tier M: evaluating 5,000 examples every
    # epoch would cost more than training); the final valid and test metrics always use whole splits
    vx, vy = task.dataset.x["valid"][: r.valid_curve_n], task.dataset.y["valid"][: r.valid_curve_n]
    curve_is_whole_valid = len(vx) == len(task.dataset.x["valid"])
    eval_bs = eval_batch(dev, task.dataset.shape)
    model.train()
    for _ in range(r.epochs):
        t0 = clock()
        perm = torch.randperm(n, generator=gen)
        if dev.type != "cpu":
            perm = perm.to(dev)
        loss_sum = torch.zeros(k, device=dev)
        correct = torch.zeros(k, device=dev)
        for i in range(0, n, r.batch_size):
            idx = perm[i : i + r.batch_size]
            with amp():
                logits = model(x[idx])
            logits = logits.float()  # the loss in float32 (a no-op without autocast)
            loss, per_model = _loss(logits, y[idx], None if t is None else t[idx], kd)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                clip()
            opt.step()
            sched.step()
            loss_sum += per_model * len(idx)
            correct += (logits.detach().argmax(-1) == y[idx, None]).float().sum(0)
        valid_logits = _predict(model, vx, eval_bs, amp).cpu()
        valid_acc = (valid_logits.argmax(-1) == vy[:, None]).float().mean(0)
        hist["epoch_seconds"].append(clock() - t0)
        hist["train_loss"].append((loss_sum / n).cpu().numpy().astype(np.float64))
        hist["train_acc"].append((correct / n).cpu().numpy().astype(np.float64))
        hist["valid_acc"].append(valid_acc.numpy().astype(np.float64))
        if progress is not None:
            progress()
    tl = task.teacher_logits
    final = {}
    for split in ("valid", "test"):
        # the last epoch's curve point already evaluated this model on the whole valid split
        logits = (
            valid_logits
            if split == "valid" and curve_is_whole_valid
            else _predict(model, task.dataset.x[split], eval_bs, amp).cpu()
        )
        m = _split_metrics(logits, task.dataset.y[split], None if tl is None else tl[split])
        final.update({f"{split}_{key}": v for key, v in m.items()})
    return {"hist": hist, "final": final}


@functools.cache
def _stored_flops(recipe: Recipe) -> dict[int, int]:
    """FLOPs of every canonical architecture from the dataset's archs file (``danas-bench archs``), or {}."""
    import pyarrow.parquet as pq  # not polars: a shard trains with torch, numpy and pyarrow alone (burst_shards.py)

    from danas_bench.core.paths import archs_file

    path = archs_file(recipe.dataset, recipe.recipe_id)
    if not path.exists():
        path = _same_student_archs(recipe)
        if path is None:
            return {}
    try:
        df = pq.read_table(path, columns=["arch_index", "flops"]).to_pydict()
    except Exception as e:  # a broken file must not silently change the time split of rows
        raise ValueError(
            f"cannot read FLOPs from {path} ({e}); rebuild it with "
            f"`danas-bench archs dataset={recipe.dataset}` or delete it"
        ) from e
    return dict(zip(df["arch_index"], df["flops"]))


def _same_student_archs(recipe: Recipe):
    """An archs file of another recipe of the dataset with the same student (width, cells, stages): a
    forward pass's FLOPs depend on the network, not on the epochs or optimiser, so a new recipe that
    keeps the student reads them instead of counting them (as long as training it, for tiny students)."""
    from danas_bench.core import schema as tb
    from danas_bench.core.paths import tables_dir

    for path in sorted((tables_dir() / recipe.dataset).glob("archs-*.parquet")):
        try:
            other = Recipe.from_dict(tb.read_meta(path)["recipe"])
        except (KeyError, ValueError, tb.TableError):
            continue
        if other.widths() == recipe.widths():
            return path
    return None


def forward_flops(index: int, recipe: Recipe) -> int:
    """FLOPs of one forward pass of one sample: from the archs file where it lists the architecture
    (counting costs ~0.2-0.4 s per architecture, as much as training it in the engine), else counted."""
    stored = _stored_flops(recipe).get(int(index))
    return int(stored) if stored is not None else count_flops(int(index), recipe)


@functools.cache
def count_flops(index: int, recipe: Recipe) -> int:
    """FLOPs of one forward pass of one sample (torch.utils.flop_counter; conv and linear)."""
    from torch.utils.flop_counter import FlopCounterMode

    ds = data_mod.load(recipe.dataset)
    model = build(index, 0, ds.shape[0], ds.num_classes, ds.ndim, **recipe.widths()).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(ds.x["test"][:1])
    return int(counter.get_total_flops())


def _records(indices: list[int], seed: int, task: Task, out: dict, total_seconds: float) -> list[dict]:
    """Split the per-model arrays into one record per architecture.

    A fused batch has one clock (model building, training, evaluation), the process CPU time: the
    core-seconds it cost, not counting time the worker was paused or waited for its core
    (docs/datasheet.md says how seconds compare across shards); each architecture is
    charged a share: half in proportion to its forward FLOPs, half equally (the FLOP-free work:
    BatchNorm, data, dispatch), so that simulated training time still orders architectures by cost.
    """
    flops = np.array([forward_flops(i, task.recipe) for i in indices], dtype=np.float64)
    share = 0.5 * flops / flops.sum() + 0.5 / len(indices)
    hist, final = out["hist"], out["final"]
    recs = []
    for j, index in enumerate(indices):
        epoch_seconds = [float(s * share[j]) for s in hist["epoch_seconds"]]
        rec = {
            "arch_index": int(index),
            "arch": space.arch_str(int(index)),
            "seed": int(seed),
            "teacher": task.kd.teacher,
            "kd_temperature": float(task.kd.temperature),
            "kd_alpha": float(task.kd.alpha),
            "recipe_id": task.recipe.recipe_id,
            "epochs": task.recipe.epochs,
            "train_loss": [float(v[j]) for v in hist["train_loss"]],
            "train_acc": [float(v[j]) for v in hist["train_acc"]],
            "valid_acc_curve": [float(v[j]) for v in hist["valid_acc"]],
            "epoch_seconds": epoch_seconds,
            "train_seconds": float(total_seconds * share[j]),
            "batch_size_models": len(indices),
        }
        for key, v in final.items():
            rec[key] = float(v[j])
        for key in ("valid_kl_teacher", "valid_agreement", "test_kl_teacher", "test_agreement"):
            rec.setdefault(key, None)
        recs.append(rec)
    return recs


def _students(indices, seed, task):
    """Built on the CPU (the same initial weights on every device); the caller moves them."""
    ds = task.dataset
    return [build(int(i), int(seed), ds.shape[0], ds.num_classes, ds.ndim, **task.recipe.widths()) for i in indices]


def train_many(indices, seed: int, task: Task, progress=None) -> list[dict]:
    """The engine: train all ``indices`` (one seed) as one fused model; one record each."""
    clock = _clock(torch.device(task.device))
    t0 = clock()
    indices = [int(i) for i in indices]
    students = _students(indices, seed, task)
    model = FusedStudents(students).to(task.device)
    owners = parameter_owners(students) if task.recipe.grad_clip is not None else None
    out = fit(model, len(indices), task, seed, progress, fused_optimizer=True, owners=owners)
    return _records(indices, seed, task, out, clock() - t0)


def train_plain(index: int, seed: int, task: Task) -> dict:
    """The baseline: one architecture, the plain PyTorch loop, same recipe and initial weights."""
    clock = _clock(torch.device(task.device))
    t0 = clock()
    model = Single(_students([index], seed, task)[0]).to(task.device)
    out = fit(model, 1, task, seed)
    return _records([int(index)], seed, task, out, clock() - t0)[0]
