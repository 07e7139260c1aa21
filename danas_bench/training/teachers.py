"""Teachers: two or more model families per dataset, trained once, stored with safetensors, logits cached.

Students never run a teacher: they read its logits on every split from
``tables/teachers/<dataset>/<teacher>.logits.safetensors``. The weights file's metadata records the
family, its config, the training recipe, the split hashes and the accuracy on every split.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn
from torch.nn import functional as F

from danas_bench.core.pairs import check_pair
from danas_bench.core.paths import tables_dir
from danas_bench.training import data as data_mod
from danas_bench.training.student import bn_cls, conv_cls

# teacher families (name -> what docs/teachers.md says); which dataset has which: danas_bench.core.pairs.TEACHERS
FAMILIES = {
    "resnet": "wide residual CNN (3 stages x 2 blocks, widths 32/64/128)",
    "mlp": "MLP (2 hidden layers of 512, dropout 0.2)",
    "tcn": "dilated 1-D CNN (5 residual blocks, dilations 1-16, width 64)",
    "vit": "vision transformer (4 x 4 patches, 6 pre-norm blocks of width 192, 3 heads)",
    "resnet_ens": "ensemble of 4 wide residual CNNs (the resnet family, seeds 0-3), mean softmax",
    "vgg": "VGG-style plain CNN (2 x [conv-conv-maxpool], widths 64/128, no residuals, dense head of 256, dropout 0.3)",
}

# ensemble families: family -> (member family, members); member i trains with seed recipe.seed + i
ENSEMBLES = {"resnet_ens": ("resnet", 4)}


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, ndim: int):
        super().__init__()
        Conv, BN = conv_cls(ndim), bn_cls(ndim)
        self.c1, self.b1 = Conv(c_in, c_out, 3, stride, 1, bias=False), BN(c_out)
        self.c2, self.b2 = Conv(c_out, c_out, 3, 1, 1, bias=False), BN(c_out)
        self.short = (
            None
            if (stride == 1 and c_in == c_out)
            else nn.Sequential(Conv(c_in, c_out, 1, stride, bias=False), BN(c_out))
        )

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet(nn.Module):
    """A wide residual CNN: 3 stages of 2 basic blocks (widths w, 2w, 4w)."""

    def __init__(self, in_channels: int, num_classes: int, ndim: int, width: int = 32):
        super().__init__()
        Conv, BN = conv_cls(ndim), bn_cls(ndim)
        self.stem = nn.Sequential(Conv(in_channels, width, 3, 1, 1, bias=False), BN(width), nn.ReLU())
        blocks, c = [], width
        for s, w in enumerate((width, 2 * width, 4 * width)):
            blocks += [Block(c, w, 1 if s == 0 else 2, ndim), Block(w, w, 1, ndim)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).flatten(2).mean(-1))


class MLP(nn.Module):
    """A plain multilayer perceptron on the flattened input: a different inductive bias."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)


class VGG(nn.Module):
    """A plain VGG-style CNN: two stages of two 3-wide convolutions and a max-pool, no residual paths, and a
    dense dropout head on the flattened map instead of global pooling; another architectural style than the
    residual network, as KD benchmarks count them (CRD, Tian et al. 2020, pairs VGG with ResNet as styles).
    digits' second family since its MLP, at its ceiling (97%), was under 2 pp above the best student."""

    def __init__(self, in_channels: int, num_classes: int, ndim: int, size: int, widths=(64, 128), hidden=256):
        super().__init__()
        Conv, BN = conv_cls(ndim), bn_cls(ndim)
        Pool = nn.MaxPool1d if ndim == 1 else nn.MaxPool2d
        layers, c = [], in_channels
        for w in widths:
            for _ in range(2):
                layers += [Conv(c, w, 3, 1, 1, bias=False), BN(w), nn.ReLU()]
                c = w
            layers.append(Pool(2))
            size //= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(c * size**ndim, hidden),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


class TCN(nn.Module):
    """A dilated 1-D convolutional network (temporal-convolution family): residual blocks whose
    dilation doubles, so the receptive field covers the whole signal without any reduction. mnist1d's
    second family since tables v2 (its MLP was below the median student, docs/teachers.md)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, dilations=(1, 2, 4, 8, 16)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, 5, padding=2, bias=False), nn.BatchNorm1d(width), nn.ReLU()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(width, width, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(),
                nn.Conv1d(width, width, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm1d(width),
            )
            for d in dilations
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = F.relu(x + block(x))
        return self.head(x.mean(-1))


class ViT(nn.Module):
    """A small vision transformer (attention family) for 2-D images: tier L's second teacher, a different
    inductive bias from the residual CNN (an MLP is below the students on CIFAR)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image: int,
        patch: int = 4,
        dim: int = 192,
        depth: int = 6,
        heads: int = 3,
    ):
        super().__init__()
        self.patch = nn.Conv2d(in_channels, dim, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.encoder(x)).mean(1))


class Ensemble(nn.Module):
    """Independently trained members whose mean softmax is the teacher's prediction, returned as its log
    (logits whose softmax is that mean): a stronger teacher of one family where a single model is at its
    ceiling (mnist1d's ResNet, docs/teachers.md)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        logp = torch.stack([m(x).log_softmax(-1) for m in self.members])
        return torch.logsumexp(logp, 0) - math.log(len(self.members))


@dataclass(frozen=True)
class TeacherRecipe:
    epochs: int = 60
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    seed: int = 0


def make(family: str, ds: data_mod.Dataset) -> nn.Module:
    if family in ENSEMBLES:
        member, k = ENSEMBLES[family]
        return Ensemble([make(member, ds) for _ in range(k)])
    if family == "resnet":
        return ResNet(ds.shape[0], ds.num_classes, ds.ndim)
    if family == "mlp":
        return MLP(int(torch.tensor(ds.shape).prod()), ds.num_classes)
    if family == "vgg":
        return VGG(ds.shape[0], ds.num_classes, ds.ndim, ds.shape[-1])
    if family == "tcn":
        if ds.ndim != 1:
            raise ValueError(f"the tcn teacher is a 1-D network; {ds.name} has {ds.ndim}-D inputs")
        return TCN(ds.shape[0], ds.num_classes)
    if family == "vit":
        if ds.ndim != 2:
            raise ValueError(f"the vit teacher is a 2-D network; {ds.name} has {ds.ndim}-D inputs")
        return ViT(ds.shape[0], ds.num_classes, ds.shape[-1])
    raise ValueError(f"unknown teacher family {family!r}; known: {', '.join(FAMILIES)}")


def teacher_dir(dataset: str) -> Path:
    return tables_dir() / "teachers" / dataset


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, bs: int = 1024) -> torch.Tensor:
    """Eval-mode logits on the CPU; ``x`` may live on the CPU while the model is on a GPU."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model(x[i : i + bs].to(dev)).cpu() for i in range(0, len(x), bs)])


def train(
    dataset: str,
    family: str,
    recipe: TeacherRecipe = TeacherRecipe(),
    out: Path | None = None,
    log=print,
    device: str = "cpu",
) -> dict:
    """Train one teacher on the train split, pick nothing on test, save weights and logits. ``device``:
    where it trains (tier L: a GPU); the model is made on the CPU, so its initial weights do not depend on it.
    An ensemble family (``ENSEMBLES``) trains its members one after another, member i with seed
    ``recipe.seed + i``, each exactly as that seed's single model would train."""
    check_pair(dataset, family)
    ds = data_mod.load(dataset)
    t0 = time.perf_counter()
    if family in ENSEMBLES:
        member, k = ENSEMBLES[family]
        members = [_fit(ds, member, dataclasses.replace(recipe, seed=recipe.seed + i), log, device) for i in range(k)]
        model = Ensemble(members)
    else:
        model = _fit(ds, family, recipe, log, device)
    seconds = time.perf_counter() - t0
    logits = {s: _logits(model, ds.x[s]).contiguous() for s in ("train", "valid", "test")}
    acc = {s: float((logits[s].argmax(1) == ds.y[s]).float().mean()) for s in logits}
    info = {
        "dataset": dataset,
        "teacher": family,
        "family": family,
        "params": sum(p.numel() for p in model.parameters()),
        "accuracy": acc,
        "train_seconds": round(seconds, 2),
        "recipe": recipe.__dict__,
        "split_hashes": ds.split_hashes,
    }
    if family in ENSEMBLES:
        member, k = ENSEMBLES[family]
        info["members"] = {"family": member, "seeds": [recipe.seed + i for i in range(k)]}
    out = out or teacher_dir(dataset)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"info": json.dumps(info, sort_keys=True)}
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out / f"{family}.safetensors", meta
    )
    save_file(logits, out / f"{family}.logits.safetensors", meta)
    return info


def _fit(ds: data_mod.Dataset, family: str, recipe: TeacherRecipe, log, device: str) -> nn.Module:
    """One model of ``family`` trained on ``ds``'s train split (SGD, Nesterov momentum, cosine schedule)."""
    torch.manual_seed(recipe.seed)
    model = make(family, ds).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
    )
    x, y = ds.x["train"].to(device), ds.y["train"].to(device)
    steps = recipe.epochs * ((len(x) + recipe.batch_size - 1) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(recipe.seed)
    for epoch in range(recipe.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(device)
        for i in range(0, len(x), recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0:
            acc = (_logits(model, ds.x["valid"]).argmax(1) == ds.y["valid"]).float().mean().item()
            log(f"  {ds.name}/{family} seed {recipe.seed} epoch {epoch + 1}: valid acc {acc:.4f}")
    return model


def info(dataset: str, teacher: str) -> dict:
    path = teacher_dir(dataset) / f"{teacher}.logits.safetensors"
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["info"])


def logits(dataset: str, teacher: str) -> dict[str, torch.Tensor]:
    """The cached teacher logits on every split; a clear error if the teacher was never trained."""
    check_pair(dataset, teacher)
    path = teacher_dir(dataset) / f"{teacher}.logits.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"no cached logits for teacher {dataset}/{teacher} at {path}; "
            f"train it with `danas-bench teachers dataset={dataset}`"
        )
    meta = info(dataset, teacher)
    ds = data_mod.load(dataset)
    if meta["split_hashes"] != ds.split_hashes:
        raise ValueError(
            f"teacher {dataset}/{teacher} was trained on other splits than this loader makes "
            f"(split hashes differ); retrain it with `danas-bench teachers dataset={dataset}`"
        )
    return load_file(str(path))


def load_model(dataset: str, teacher: str) -> nn.Module:
    ds = data_mod.load(dataset)
    model = make(teacher, ds)
    model.load_state_dict(load_file(str(teacher_dir(dataset) / f"{teacher}.safetensors")))
    return model.eval()
