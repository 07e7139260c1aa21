"""The student: NAS-Bench-201's macro skeleton over the cell, for 1-D signals and 2-D images.

Layout (as NAS-Bench-201, with depth ``cells`` per stage and ``stages`` stages)::

    stem (conv3 + BN) -> [cell x cells] -> reduction -> [cell x cells] -> ... -> BN-ReLU -> pool -> linear

A reduction is NAS-Bench-201's residual basic block (stride 2, doubles the width). Edge ops are
``ReLU-Conv-BN`` for the two convolutions, a 3-wide average pool without padding in the count, the
identity, and zero. This module is the *plain* model, one architecture per module; the batched engine
in :mod:`danas_bench.training.engine` copies its initial weights from these modules, so both start equal.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from danas_bench.core import space


def conv_cls(ndim: int):
    return nn.Conv1d if ndim == 1 else nn.Conv2d


def bn_cls(ndim: int):
    return nn.BatchNorm1d if ndim == 1 else nn.BatchNorm2d


def pool_cls(ndim: int):
    return nn.AvgPool1d if ndim == 1 else nn.AvgPool2d


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, ndim: int):
        super().__init__(nn.ReLU(), conv_cls(ndim)(c_in, c_out, k, stride, k // 2, bias=False), bn_cls(ndim)(c_out))


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


def make_op(op: int, c: int, ndim: int) -> nn.Module:
    name = space.OPS[op]
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, ndim)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, ndim)
    return pool_cls(ndim)(3, 1, 1, count_include_pad=False)


class Cell(nn.Module):
    def __init__(self, ops: tuple[int, ...], c: int, ndim: int):
        super().__init__()
        self.ops = ops
        self.edges = nn.ModuleList(make_op(op, c, ndim) for op in ops)

    def forward(self, x):
        nodes = [x]
        k = 0
        for node in (1, 2, 3):
            acc = None
            for src in range(node):
                y = self.edges[k](nodes[src])
                acc = y if acc is None else acc + y
                k += 1
            nodes.append(acc)
        return nodes[3]


class Reduction(nn.Module):
    """NAS-Bench-201's ResNetBasicblock with stride 2."""

    def __init__(self, c_in: int, c_out: int, ndim: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, ndim)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, ndim)
        self.down = nn.Sequential(pool_cls(ndim)(2, 2, 0), conv_cls(ndim)(c_in, c_out, 1, 1, 0, bias=False))

    def forward(self, x):
        return self.conv_b(self.conv_a(x)) + self.down(x)


def stage_widths(width: int, stages: int) -> list[int]:
    return [width * 2**s for s in range(stages)]


class Student(nn.Module):
    def __init__(
        self, arch, in_channels: int, num_classes: int, ndim: int, width: int = 16, cells: int = 1, stages: int = 3
    ):
        super().__init__()
        self.ops = space.to_ops(arch)
        widths = stage_widths(width, stages)
        self.stem = nn.Sequential(conv_cls(ndim)(in_channels, width, 3, 1, 1, bias=False), bn_cls(ndim)(width))
        layers: list[nn.Module] = []
        for s, c in enumerate(widths):
            if s > 0:
                layers.append(Reduction(widths[s - 1], c, ndim))
            layers.extend(Cell(self.ops, c, ndim) for _ in range(cells))
        self.layers = nn.Sequential(*layers)
        self.head_bn = bn_cls(ndim)(widths[-1])
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = torch.relu(self.head_bn(x))
        return self.classifier(x.flatten(2).mean(-1))


def init_seed(index: int, seed: int) -> int:
    """The initialisation seed of (architecture, seed): stable across processes and machines."""
    digest = hashlib.sha256(f"danas-init:{index}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def build(index: int, seed: int, in_channels: int, num_classes: int, ndim: int, **widths) -> Student:
    """A student with the deterministic initial weights of (architecture index, seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(index, seed))
        return Student(index, in_channels, num_classes, ndim, **widths)
