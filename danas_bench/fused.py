"""Many students in one module: K architectures trained as one set of grouped convolutions.

Each student owns K-th of the channels: model ``k`` lives in channels ``[k*C, (k+1)*C)`` of every
activation. Architecture-independent layers (stem, reductions, head) become grouped convolutions with
``groups=K``. Inside a cell, the edges that leave one node and use the same convolution op are
gathered across all models and edges into *one* grouped convolution (its parameters hold exactly the
(edge, model) pairs that use it, so no FLOP is spent on an op a model does not have), and the results
are scattered into the destination nodes with ``index_add``. Skip and pooling edges are
parameter-free and applied to every channel at once through 0/1 channel masks.

Parameters are copied from K plain :class:`~danas_bench.student.Student` modules, so a fused model
starts from exactly the weights the plain loop would use; BatchNorm statistics are per channel and
optimiser updates are elementwise, so the models stay independent: only floating-point summation
order differs from training them one by one.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.nn import functional as F

from . import space
from .student import Cell, Reduction, Student

CONV_OPS = (space.OP_INDEX["nor_conv_1x1"], space.OP_INDEX["nor_conv_3x3"])
SKIP, POOL = space.OP_INDEX["skip_connect"], space.OP_INDEX["avg_pool_3x3"]


def _cat_bn(bns: list[nn.modules.batchnorm._BatchNorm], ndim: int) -> nn.Module:
    out = (nn.BatchNorm1d if ndim == 1 else nn.BatchNorm2d)(sum(b.num_features for b in bns))
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, name).copy_(torch.cat([getattr(b, name) for b in bns]))
    return out


@functools.lru_cache(maxsize=None)
def _inv_count(h: int, w: int, kh: int, kw: int) -> torch.Tensor:
    """1 / (number of non-padding cells) of a stride-1 'same' average pool: count_include_pad=False."""
    ones = torch.ones(1, 1, h, w)
    cnt = F.conv2d(ones, torch.ones(1, 1, kh, kw), padding=(kh // 2, kw // 2))
    return 1.0 / cnt


@functools.lru_cache(maxsize=None)
def _pool_matrix(h: int, w: int, kh: int, kw: int) -> torch.Tensor:
    """(h*w, h*w) matrix M with ``x.flatten(-2) @ M`` = the 'same' average pool, counts folded in."""
    def band(n: int, k: int) -> torch.Tensor:
        i = torch.arange(n)
        return ((i[:, None] - i[None, :]).abs() <= k // 2).float()

    m = torch.kron(band(h, kh), band(w, kw))  # m[i, j] = 1: input position i lies in output j's window
    return m / m.sum(0, keepdim=True)


def pool_parts(x: torch.Tensor, kh: int, kw: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Average pool (stride 1, 'same' padding, padding excluded from the count) as ``(y, scale)``:
    the pool is ``y * scale``, or ``y`` itself when ``scale`` is None.

    As one matmul over the flattened positions (forward and backward are a single GEMM each, counts
    folded into the matrix), or, for short 1-D rows where that GEMM is too thin, as a depthwise
    convolution with a ones kernel whose per-position 1/count ``scale`` the caller folds into the mask
    it multiplies by anyway (one full-size multiply less forward and backward). Both beat
    ``F.avg_pool2d`` on CPU at these sizes by 2-6x (docs/performance.md).
    """
    n, c, h, w = x.shape
    if h == 1 and w < 16:
        ones = torch.ones(c, 1, kh, kw, dtype=x.dtype)
        return F.conv2d(x, ones, None, 1, (kh // 2, kw // 2), 1, c), _inv_count(h, w, kh, kw)
    return (x.reshape(n, c, h * w) @ _pool_matrix(h, w, kh, kw)).reshape(n, c, h, w), None


def avg_pool_same(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    y, scale = pool_parts(x, kh, kw)
    return y if scale is None else y * scale


def _channels(models, c: int) -> torch.Tensor:
    return (torch.as_tensor(models, dtype=torch.long)[:, None] * c + torch.arange(c)[None, :]).reshape(-1)


def _w2d(weights: list[torch.Tensor]) -> nn.Parameter:
    """Concatenate conv weights; 1-D kernels become (1, k) 2-D kernels."""
    w = torch.cat([t.detach() for t in weights]).clone()
    return nn.Parameter(w.unsqueeze(2) if w.dim() == 3 else w)


def pack_factor(c_in: int, groups: int) -> int:
    """How many groups to pack into one block-diagonal group. oneDNN's grouped convolution is slow
    for 4 input channels per group: two 4-channel groups run as one 8-channel group with zero
    off-diagonal blocks compute twice the FLOPs yet run 1.7x (1-D) to 2.9x (3x3 on 8x8) faster on
    this CPU (docs/performance.md). Wider groups gain nothing."""
    pack = 8 // c_in if c_in < 8 else 1
    while pack > 1 and groups % pack:
        pack //= 2
    return pack


class _Conv(nn.Module):
    """A grouped ``Conv-BN`` over whole per-model channel blocks (ReLU is applied by the caller).

    With ``pack`` > 1, ``pack`` neighbouring groups share one block-diagonal weight; a constant 0/1
    mask keeps the off-diagonal blocks at zero (their gradient is zero, so SGD with weight decay and
    momentum never moves them) and the models stay independent.
    """

    def __init__(self, convs: list[nn.Module], bns: list[nn.Module], ndim: int):
        super().__init__()
        w = _w2d([cv.weight for cv in convs]).detach()
        g = len(convs)
        co, ci = convs[0].weight.shape[:2]
        pack = pack_factor(ci, g)
        if pack > 1:
            blocks = torch.zeros(g // pack, pack * co, pack * ci, *w.shape[2:])
            mask = torch.zeros_like(blocks)
            for j in range(g):
                q, r = divmod(j, pack)
                blocks[q, r * co:(r + 1) * co, r * ci:(r + 1) * ci] = w[j * co:(j + 1) * co]
                mask[q, r * co:(r + 1) * co, r * ci:(r + 1) * ci] = 1.0
            w = blocks.reshape(g * co, pack * ci, *w.shape[2:])
            self.register_buffer("mask", mask.reshape(w.shape))
        else:
            self.mask = None
        self.weight = nn.Parameter(w)
        self.groups = g // pack
        s, p = convs[0].stride[-1], convs[0].padding[-1]
        self.stride = (1, s) if ndim == 1 else convs[0].stride
        self.padding = (0, p) if ndim == 1 else convs[0].padding
        self.bn = _cat_bn(bns, 2)

    def forward(self, x):  # x is already ReLU'd where the op needs it
        w = self.weight if self.mask is None else self.weight * self.mask
        if self.training:
            return self.bn(F.conv2d(x, w, None, self.stride, self.padding, 1, self.groups))
        # evaluation: BatchNorm with running statistics is an affine map, folded into the convolution
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        w = w * scale.view(-1, 1, 1, 1)
        return F.conv2d(x, w, bn.bias - bn.running_mean * scale, self.stride, self.padding, 1, self.groups)


class FusedCell(nn.Module):
    def __init__(self, cells: list[Cell], c: int, ndim: int):
        super().__init__()
        k_models = len(cells)
        self.c = c
        self.pool_k = (1, 3) if ndim == 1 else (3, 3)
        ops = [cell.ops for cell in cells]
        mask_shape = (1, k_models * c, 1, 1)
        skip, pool = [], []
        for e in range(space.N_EDGES):
            for which, store in ((SKIP, skip), (POOL, pool)):
                users = [k for k in range(k_models) if ops[k][e] == which]
                m = torch.zeros(k_models * c)
                m[_channels(users, c)] = 1.0 if users else 0.0
                store.append(m.reshape(mask_shape) if users else None)
        for e in range(space.N_EDGES):
            if skip[e] is not None:
                self.register_buffer(f"skip{e}", skip[e])
            if pool[e] is not None:
                self.register_buffer(f"pool{e}", pool[e])
        self.has_skip = [m is not None for m in skip]
        self.has_pool = [m is not None for m in pool]
        # one grouped conv per (source node, conv op), its groups = the (edge, model) pairs using it
        self.convs = nn.ModuleDict()
        self.plan: dict[str, tuple[int, list[tuple[int, int, int]]]] = {}  # key -> (source, [(dst, channels, i)])
        for src in range(3):
            edges = [e for e, (dst, s) in enumerate(space.EDGES) if s == src]
            for op in CONV_OPS:
                pairs = [(e, k) for e in edges for k in range(k_models) if ops[k][e] == op]
                if not pairs:
                    continue
                key = f"s{src}o{op}"
                mods = [cells[k].edges[e] for e, k in pairs]
                convs, bns, users = [m[1] for m in mods], [m[2] for m in mods], [k for _, k in pairs]
                if len(pairs) % 2 and pack_factor(c, len(pairs) + 1) > 1:
                    # an even group count lets _Conv pack groups: add a zero group whose output is never read
                    convs.append(copy.deepcopy(convs[0]).requires_grad_(False))
                    nn.init.zeros_(convs[-1].weight)
                    bns.append(copy.deepcopy(bns[0]))
                    users.append(users[0])
                self.convs[key] = _Conv(convs, bns, ndim)
                gather = _channels(users, c)
                # the conv output holds each edge's models in turn: (destination node, channels, indices)
                scatters = []
                for e in edges:
                    models = [k for e2, k in pairs if e2 == e]
                    if models:
                        scatters.append((space.EDGES[e][0], len(models) * c, _channels(models, c)))
                self.register_buffer(f"g_{key}", gather)
                for i, (_, _, idx) in enumerate(scatters):
                    self.register_buffer(f"sc_{key}_{i}", idx)
                self.plan[key] = (src, [(dst, n, i) for i, (dst, n, _) in enumerate(scatters)])
        self._full: dict = {}  # expanded masks by (name, spatial shape); rebuilt from the buffers

    def _full_mask(self, name: str, like: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The (1, C, 1, 1) channel mask expanded to (1, C, H, W) (times a per-position ``scale``) and
        cached: broadcasting over a short innermost dimension (10 or 4 positions in the last stage) is
        3-6x slower on CPU than a mask as long as the whole sample."""
        key = (name, like.shape[2:], scale is not None)
        full = self._full.get(key)
        if full is None:
            full = getattr(self, name).expand(1, -1, *like.shape[2:])
            full = self._full[key] = (full * scale if scale is not None else full).contiguous()
        return full

    def forward(self, x):
        nodes = {0: x}
        acc: dict[int, torch.Tensor | None] = {1: None, 2: None, 3: None}
        # A node's sum is updated in place once it is a tensor this forward made (not a view of a conv
        # output): no op saves a sum for its backward, and a node is complete before it is read.
        owned: set[int] = set()

        def update(dst, fresh, inplace, outplace, fresh_is_view=False):
            if acc[dst] is None:
                acc[dst] = fresh()
                if not fresh_is_view:
                    owned.add(dst)
            elif dst in owned:
                inplace(acc[dst])
            else:
                acc[dst] = outplace(acc[dst])
                owned.add(dst)

        def add_masked(dst, t, name, scale=None):  # acc[dst] += t * mask (* scale)
            m = self._full_mask(name, t, scale)
            update(dst, lambda: t * m, lambda a: a.addcmul_(t, m), lambda a: torch.addcmul(a, t, m))

        def add_indexed(dst, idx, t):  # acc[dst][:, idx] += t
            update(dst, lambda: torch.zeros_like(x).index_add_(1, idx, t), lambda a: a.index_add_(1, idx, t),
                   lambda a: a.index_add(1, idx, t))

        for src in range(3):
            if src > 0:
                nodes[src] = acc[src] if acc[src] is not None else torch.zeros_like(x)
            h = nodes[src]
            pooled = scale = None  # the pool of a node is the same for every edge leaving it: compute it once
            for e, (dst, s) in enumerate(space.EDGES):
                if s != src:
                    continue
                if self.has_skip[e]:
                    add_masked(dst, h, f"skip{e}")
                if self.has_pool[e]:
                    if pooled is None:
                        pooled, scale = pool_parts(h, *self.pool_k)
                    add_masked(dst, pooled, f"pool{e}", scale)
            relu = None
            for key, (s, scatters) in self.plan.items():
                if s != src:
                    continue
                if relu is None:
                    relu = F.relu(h)
                y = self.convs[key](relu.index_select(1, getattr(self, f"g_{key}")))
                sizes = [n for _, n, _ in scatters]
                rest = y.shape[1] - sum(sizes)  # a padding group's output, never read
                pieces = y.split(sizes + [rest] if rest else sizes, 1)  # one backward node, not one per piece
                for (dst, n, i), piece in zip(scatters, pieces):
                    if n == x.shape[1]:
                        update(dst, lambda: piece, lambda a: a.add_(piece), lambda a: a + piece, fresh_is_view=True)
                    else:
                        add_indexed(dst, getattr(self, f"sc_{key}_{i}"), piece)
        return acc[3] if acc[3] is not None else torch.zeros_like(x)


class FusedReduction(nn.Module):
    def __init__(self, reds: list[Reduction], ndim: int):
        super().__init__()
        self.conv_a = _Conv([r.conv_a[1] for r in reds], [r.conv_a[2] for r in reds], ndim)
        self.conv_b = _Conv([r.conv_b[1] for r in reds], [r.conv_b[2] for r in reds], ndim)
        self.down_w = _w2d([r.down[1].weight for r in reds])
        self.groups = len(reds)
        self.pool_k = (1, 2) if ndim == 1 else 2

    def forward(self, x):
        y = self.conv_b(F.relu(self.conv_a(F.relu(x))))
        return y + F.conv2d(self._halve(x), self.down_w, None, 1, 0, 1, self.groups)

    def _halve(self, x):
        """The shortcut's 2-wide, stride-2 average pool. On 1-D rows of even length two strided slices
        and an add run 2x faster than ``F.avg_pool2d`` with a (1, 2) kernel (docs/performance.md)."""
        if self.pool_k == (1, 2) and x.shape[-1] % 2 == 0:
            return (x[..., 0::2] + x[..., 1::2]) * 0.5
        return F.avg_pool2d(x, self.pool_k, self.pool_k)


class FusedStudents(nn.Module):
    """K students as one module; ``forward`` returns logits shaped (batch, K, classes)."""

    def __init__(self, students: list[Student]):
        super().__init__()
        s0 = students[0]
        ndim = 1 if isinstance(s0.stem[0], nn.Conv1d) else 2
        self.k = len(students)
        self.ndim = ndim
        self.stem_w = _w2d([s.stem[0].weight for s in students])
        self.stem_pad = (0, 1) if ndim == 1 else 1
        self.stem_bn = _cat_bn([s.stem[1] for s in students], 2)
        layers = []
        for pos, layer in enumerate(s0.layers):
            if isinstance(layer, Cell):
                layers.append(FusedCell([s.layers[pos] for s in students], self._width(s0, pos), ndim))
            else:
                layers.append(FusedReduction([s.layers[pos] for s in students], ndim))
        self.layers = nn.Sequential(*layers)
        self.head_bn = _cat_bn([s.head_bn for s in students], 2)
        self.cls_w = nn.Parameter(torch.stack([s.classifier.weight.detach() for s in students]).clone())
        self.cls_b = nn.Parameter(torch.stack([s.classifier.bias.detach() for s in students]).clone())

    @staticmethod
    def _width(s0: Student, pos: int) -> int:
        c = s0.stem[0].weight.shape[0]
        for layer in list(s0.layers)[:pos]:
            if isinstance(layer, Reduction):
                c = layer.conv_b[1].weight.shape[0]
        return c

    def forward(self, x):
        if self.ndim == 1:
            x = x.unsqueeze(2)
        h = self.stem_bn(F.conv2d(x, self.stem_w, None, 1, self.stem_pad))
        h = torch.relu(self.head_bn(self.layers(h)))
        b = h.shape[0]
        feats = h.reshape(b, self.k, -1, h[0, 0].numel()).mean(-1)  # (B, K, C_last)
        return torch.einsum("bkc,koc->bko", feats, self.cls_w) + self.cls_b


class Single(nn.Module):
    """The plain loop's model: one student, its logits shaped (batch, 1, classes) like the fused one."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, x):
        return self.student(x).unsqueeze(1)
