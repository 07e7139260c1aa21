"""Many students in one module: K architectures trained as one set of grouped convolutions.

Each student owns K-th of the channels: model ``k`` lives in channels ``[k*C, (k+1)*C)`` of every
activation. Architecture-independent layers (stem, reductions, head) become grouped convolutions with
``groups=K``. Inside a cell, the (edge, model) pairs that leave one node with the same op are
gathered into one tensor, the op runs once on it (one grouped convolution, whose parameters hold
exactly the pairs that use it, so no FLOP is spent on an op a model does not have; one pool; nothing
for a skip), and each edge's slice is added into its destination node with ``index_add``.

Layout: the whole batch is one sample, ``(1, K*C, B, L)`` for 1-D signals and ``(1, K*C, B, H, W)``
for images, with every kernel 1 wide along the batch axis (conv2d with (1, k) kernels, conv3d with
(1, k, k) kernels), so no op mixes samples. Each channel is then one contiguous block of memory:
gathers, scatters and BatchNorm statistics run over contiguous blocks, and the grouped convolutions
see one large image per group (docs/performance.md has the measurements).

Parameters are copied from K plain :class:`~danas_bench.student.Student` modules, so a fused model
starts from exactly the weights the plain loop would use; BatchNorm statistics are per channel and
optimiser updates are elementwise, so the models stay independent: only floating-point rounding
differs from training them one by one (summation order, the BatchNorm variance formula, the fused
optimiser's last bit).
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


class _TallBNTrain(torch.autograd.Function):
    """Training-mode BatchNorm of a tall activation ``(1, C, ...)``: the statistics from two row
    reductions (a sum and a 2-norm per channel) and the output from evaluation-mode BatchNorm with
    them (one pass); three passes over the input instead of ``native_batch_norm``'s slower training
    forward (docs/performance.md). The backward is PyTorch's own ``native_batch_norm_backward``."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        rows = x.reshape(x.shape[1], -1)
        m = rows.shape[1]
        mean = rows.sum(1).div_(m)
        # var = E[x^2] - E[x]^2 in float32 loses digits where the mean is far larger than the spread
        # (relative error ~4e-5 at mean/std 10, 4e-3 at 100); the inputs of every BatchNorm of the
        # tier-S fused models stay below mean/std 3 at initialisation and through training (session 7
        # review: error <= 1.1e-6 of var + eps); tests/test_engine.py checks mean/std 10
        var = torch.linalg.vector_norm(rows, 2, 1).square_().div_(m).sub_(mean * mean).clamp_min_(0.0)
        # the affine pass: evaluation-mode BatchNorm with these statistics is one vectorised pass
        out = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        invstd = (var + eps).rsqrt_()
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.set_materialize_grads(False)
        unbiased = var.mul_(m / max(m - 1, 1))  # for the running statistics
        ctx.mark_non_differentiable(mean, unbiased)
        return out, mean, unbiased

    @staticmethod
    def backward(ctx, grad, _mean, _var):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps, list(ctx.needs_input_grad[:3]))
        return gx, gw, gb, None


class TallBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the channels of the tall layout (any rank): :class:`_TallBNTrain` in training,
    ``F.batch_norm`` with the running statistics in evaluation."""

    def _check_input_dim(self, x):
        if x.dim() < 3 or x.shape[0] != 1:
            raise ValueError(f"TallBatchNorm expects a tall activation (1, C, ...), got shape {tuple(x.shape)}")
        if self.training and x[0, 0].numel() < 2:
            raise ValueError(f"expected more than 1 value per channel when training, got shape {tuple(x.shape)}")

    def forward(self, x):
        self._check_input_dim(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        out, mean, var = _TallBNTrain.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
            self.num_batches_tracked.add_(1)
        return out


def _cat_bn(bns: list[nn.modules.batchnorm._BatchNorm]) -> nn.Module:
    """One BatchNorm over the channels of several; they must agree on eps and momentum and be affine
    with running statistics (the students' defaults), which is what TallBatchNorm implements."""
    b0 = bns[0]
    if any((b.eps, b.momentum, b.affine, b.track_running_stats) != (b0.eps, b0.momentum, True, True) for b in bns) \
            or b0.momentum is None:
        raise ValueError("fused BatchNorms must share eps and a float momentum, be affine and track running "
                         "statistics (nn.BatchNorm's defaults)")
    out = TallBatchNorm(sum(b.num_features for b in bns), eps=b0.eps, momentum=b0.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, name).copy_(torch.cat([getattr(b, name) for b in bns]))
    return out


@functools.lru_cache(maxsize=None)
def _inv_count(w: int, k: int) -> torch.Tensor:
    """1 / (number of non-padding cells) of a stride-1 'same' 1-D average pool: count_include_pad=False.
    Cached, so made outside inference mode (evaluation) even when first asked for there: an inference
    tensor cannot be saved for a later training step's backward."""
    with torch.inference_mode(False):
        cnt = F.conv1d(torch.ones(1, 1, w), torch.ones(1, 1, k), padding=k // 2)
        return (1.0 / cnt).reshape(w)


@functools.lru_cache(maxsize=None)
def _pool_matrix(shape: tuple[int, ...], k: int) -> torch.Tensor:
    """(n, n) matrix M, n = prod(shape), with ``x.flatten() @ M`` = the 'same' k-wide average pool
    over a plane (or row) of ``shape``, padding excluded from the counts (folded in). Made outside
    inference mode, like :func:`_inv_count`."""
    def band(n: int) -> torch.Tensor:
        i = torch.arange(n)
        return ((i[:, None] - i[None, :]).abs() <= k // 2).float()

    with torch.inference_mode(False):
        m = band(shape[0])
        for n in shape[1:]:
            m = torch.kron(m, band(n))  # m[i, j] = 1: input position i lies in output j's window
        return m / m.sum(0, keepdim=True)


def avg_pool_same(x: torch.Tensor, ndim: int, k: int = 3) -> torch.Tensor:
    """The 'same' k-wide average pool over the last ``ndim`` dims (NAS-Bench-201's avg_pool_3x3:
    stride 1, padding excluded from the count).

    As one matmul over the flattened positions (forward and backward are a single GEMM each, counts
    folded into the matrix), or, for short 1-D rows where that GEMM is too thin, as a depthwise
    convolution with a ones kernel times a per-position 1/count. Both beat ``F.avg_pool2d`` on CPU at
    these sizes by 2-6x (docs/performance.md).
    """
    shape = tuple(x.shape[-ndim:])
    if ndim == 1 and shape[0] < 16:
        c = x.shape[1]
        ones = torch.ones(c, 1, *([1] * (x.dim() - 3)), k, dtype=x.dtype)
        pad = (0,) * (x.dim() - 3) + (k // 2,)
        conv = F.conv2d if x.dim() == 4 else F.conv1d
        return conv(x, ones, None, 1, pad, 1, c) * _inv_count(shape[0], k)
    n = shape[0] if ndim == 1 else shape[0] * shape[1]
    return (x.reshape(-1, n) @ _pool_matrix(shape, k)).reshape(x.shape)


def _channels(models, c: int) -> torch.Tensor:
    return (torch.as_tensor(models, dtype=torch.long)[:, None] * c + torch.arange(c)[None, :]).reshape(-1)


def _tall(weights: list[torch.Tensor]) -> nn.Parameter:
    """Concatenate conv weights and give them a kernel size 1 along the batch axis of the tall layout:
    (C_out, C_in, k) -> (C_out, C_in, 1, k) and (C_out, C_in, k, k) -> (C_out, C_in, 1, k, k)."""
    return nn.Parameter(torch.cat([t.detach() for t in weights]).clone().unsqueeze(2))


def _conv(x, w, bias=None, stride=1, padding=0, groups=1):
    return (F.conv2d if w.dim() == 4 else F.conv3d)(x, w, bias, stride, padding, 1, groups)


def pack_factor(c_in: int, groups: int) -> int:
    """How many groups to pack into one block-diagonal group. oneDNN's grouped convolution is slow
    for 4 input channels per group: two 4-channel groups run as one 8-channel group with zero
    off-diagonal blocks compute twice the FLOPs yet run 1.7x (1-D) to 2.9x (3x3 on 8x8) faster on
    this CPU (docs/performance.md). Wider groups gain nothing."""
    pack = 8 // c_in if c_in < 8 else 1
    while pack > 1 and groups % pack:
        pack //= 2
    return pack


def grouped_conv(x, w, bias, stride, padding, groups: int, bmm: bool) -> torch.Tensor:
    """A grouped convolution on the tall layout, or, for a 1x1 stride-1 kernel, one batched matmul over
    the groups: PyTorch sends a single image with a 1x1 kernel to its slow native kernel (no oneDNN);
    ``bmm`` runs 1.5-2.2x faster than that, and 2-4.7x faster than oneDNN on B images of height 1."""
    if not bmm:
        return _conv(x, w, bias, stride, padding, groups)
    c = x.shape[1]
    cols = x.reshape(groups, c // groups, -1)
    w3 = w.reshape(groups, -1, c // groups)
    y = torch.bmm(w3, cols) if bias is None else torch.baddbmm(bias.view(groups, -1, 1), w3, cols)
    return y.view(1, -1, *x.shape[2:])


class _Conv(nn.Module):
    """A grouped ``Conv-BN`` over whole per-model channel blocks (ReLU is applied by the caller).

    With ``pack`` > 1, ``pack`` neighbouring groups share one block-diagonal weight; a constant 0/1
    mask keeps the off-diagonal blocks at zero (their gradient is zero, so SGD with weight decay and
    momentum never moves them) and the models stay independent.
    """

    def __init__(self, convs: list[nn.Module], bns: list[nn.Module], ndim: int):
        super().__init__()
        w = _tall([cv.weight for cv in convs]).detach()
        g = len(convs)
        co, ci = convs[0].weight.shape[:2]
        s, p = convs[0].stride[-1], convs[0].padding[-1]
        # a 1x1 stride-1 kernel is a batched matmul (grouped_conv), which needs no packing
        self.bmm = w.shape[-1] == 1 and s == 1
        pack = 1 if self.bmm else pack_factor(ci, g)
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
        self.stride = (1,) + (s,) * ndim
        self.padding = (0,) + (p,) * ndim
        self.bn = _cat_bn(bns)

    def forward(self, x):  # x is already ReLU'd where the op needs it
        w = self.weight if self.mask is None else self.weight * self.mask
        if self.training:
            return self.bn(grouped_conv(x, w, None, self.stride, self.padding, self.groups, self.bmm))
        # evaluation: BatchNorm with running statistics is an affine map, folded into the convolution
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        w = w * scale.view(-1, *[1] * (w.dim() - 1))
        return grouped_conv(x, w, bn.bias - bn.running_mean * scale, self.stride, self.padding, self.groups, self.bmm)


class FusedCell(nn.Module):
    """One cell of K students. Every edge op is applied to exactly the (edge, model) pairs that use it:
    the users' channels are gathered (one ``index_select`` per source node for its skips and pools,
    one for its convolutions, ReLU'd in place after the gather), each op runs on its slice (a grouped
    conv, the pool, or nothing for a skip), and each edge's slice of the result is added into its
    destination node with ``index_add``. Gathering only the users costs about a fifth
    of the memory traffic of multiplying whole nodes by 0/1 channel masks (docs/performance.md)."""

    def __init__(self, cells: list[Cell], c: int, ndim: int):
        super().__init__()
        k_models = len(cells)
        self.c = c
        self.ndim = ndim
        ops = [cell.ops for cell in cells]
        self.convs = nn.ModuleDict()
        # key -> (source, op, [(dst, channels, i)]); scatters in sc_<key>_<i>, gathers merged below
        self.plan: dict[str, tuple[int, int, list[tuple[int, int, int]]]] = {}
        self.identity: set[str] = set()  # skips that every model takes on one edge: no gather needed
        gathers: dict[str, torch.Tensor] = {}  # key -> the input channels of its (edge, model) pairs
        for src in range(3):
            edges = [e for e, (dst, s) in enumerate(space.EDGES) if s == src]
            for op in (SKIP, POOL) + CONV_OPS:
                pairs = [(e, k) for e in edges for k in range(k_models) if ops[k][e] == op]
                if not pairs:
                    continue
                key = f"s{src}o{op}"
                users = [k for _, k in pairs]
                if op in CONV_OPS:
                    mods = [cells[k].edges[e] for e, k in pairs]
                    convs, bns = [m[1] for m in mods], [m[2] for m in mods]
                    packs = op != CONV_OPS[0]  # 1x1 convs are a bmm, unpacked
                    if packs and len(pairs) % 2 and pack_factor(c, len(pairs) + 1) > 1:
                        # an even group count lets _Conv pack groups: a zero group whose output is never read
                        convs.append(copy.deepcopy(convs[0]).requires_grad_(False))
                        nn.init.zeros_(convs[-1].weight)
                        bns.append(copy.deepcopy(bns[0]))
                        users.append(users[0])
                    self.convs[key] = _Conv(convs, bns, ndim)
                elif op == SKIP and users == list(range(k_models)):
                    self.identity.add(key)
                # the op's output holds each edge's models in turn: (destination node, channels, indices)
                scatters = []
                for e in edges:
                    models = [k for e2, k in pairs if e2 == e]
                    if models:
                        scatters.append((space.EDGES[e][0], len(models) * c, _channels(models, c)))
                gathers[key] = _channels(users, c)
                for i, (_, _, idx) in enumerate(scatters):
                    self.register_buffer(f"sc_{key}_{i}", idx)
                self.plan[key] = (src, op, [(dst, n, i) for i, (dst, n, _) in enumerate(scatters)])
        # one gather per source node and input (raw for skips and pools, ReLU'd for the convs) instead
        # of one per op: fewer full-size zero-filled gradients in the backward pass
        self.gathers: dict[tuple[int, bool], list[tuple[str, int]]] = {}  # (src, relu) -> [(key, channels)]
        for key, (src, op, _) in self.plan.items():
            if key not in self.identity:
                self.gathers.setdefault((src, op in CONV_OPS), []).append((key, len(gathers[key])))
        for (src, relu), parts in self.gathers.items():
            self.register_buffer(f"gather_{src}_{int(relu)}", torch.cat([gathers[k] for k, _ in parts]))

    def forward(self, x):
        nodes = {0: x}
        acc: dict[int, torch.Tensor | None] = {1: None, 2: None, 3: None}
        # A node's sum is updated in place once it is a tensor this forward made (not a view of an op's
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

        def add_indexed(dst, idx, t):  # acc[dst][:, idx] += t
            update(dst, lambda: torch.zeros_like(x).index_add_(1, idx, t), lambda a: a.index_add_(1, idx, t),
                   lambda a: a.index_add(1, idx, t))

        for src in range(3):
            if src > 0:
                nodes[src] = acc[src] if acc[src] is not None else torch.zeros_like(x)
            h = nodes[src]
            inputs = {}  # key -> the gathered input of its op
            for relu in (False, True):
                parts = self.gathers.get((src, relu))
                if parts:
                    g = h.index_select(1, getattr(self, f"gather_{src}_{int(relu)}"))
                    if relu:  # on the gathered copy, in place: no full-size ReLU'd node is made
                        g = g.relu_()
                    pieces = g.split([n for _, n in parts], 1) if len(parts) > 1 else [g]
                    inputs.update(zip([k for k, _ in parts], pieces))
            for key, (s, op, scatters) in self.plan.items():
                if s != src:
                    continue
                if key in self.identity:
                    y = h
                elif op == SKIP:
                    y = inputs[key]
                elif op == POOL:
                    y = avg_pool_same(inputs[key], self.ndim)
                else:
                    y = self.convs[key](inputs[key])
                sizes = [n for _, n, _ in scatters]
                rest = y.shape[1] - sum(sizes)  # a padding group's output, never read
                pieces = y.split(sizes + [rest] if rest else sizes, 1) if len(sizes) > 1 or rest else [y]
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
        self.down_w = _tall([r.down[1].weight for r in reds])
        self.groups = len(reds)
        self.ndim = ndim

    def forward(self, x):
        y = self.conv_b(F.relu(self.conv_a(F.relu(x))))
        return y + grouped_conv(self._halve(x), self.down_w, None, 1, 0, self.groups, True)

    def _halve(self, x):
        """The shortcut's 2-wide, stride-2 average pool. On 1-D rows of even length two strided slices
        and an add run 2x faster than ``F.avg_pool2d`` with a (1, 2) kernel (docs/performance.md), on
        even planes four slices beat ``F.avg_pool3d``."""
        if self.ndim == 1 and x.shape[-1] % 2 == 0:
            return (x[..., 0::2] + x[..., 1::2]) * 0.5
        if self.ndim == 1:
            return F.avg_pool2d(x, (1, 2), (1, 2))
        if x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:  # likewise four strided slices on planes
            return (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.25
        return F.avg_pool3d(x, (1, 2, 2), (1, 2, 2))


class FusedStudents(nn.Module):
    """K students as one module; ``forward`` returns logits shaped (batch, K, classes)."""

    def __init__(self, students: list[Student]):
        super().__init__()
        s0 = students[0]
        ndim = 1 if isinstance(s0.stem[0], nn.Conv1d) else 2
        self.k = len(students)
        self.ndim = ndim
        self.stem_w = _tall([s.stem[0].weight for s in students])
        self.stem_pad = (0,) + (1,) * ndim
        self.stem_bn = _cat_bn([s.stem[1] for s in students])
        layers = []
        for pos, layer in enumerate(s0.layers):
            if isinstance(layer, Cell):
                layers.append(FusedCell([s.layers[pos] for s in students], self._width(s0, pos), ndim))
            else:
                layers.append(FusedReduction([s.layers[pos] for s in students], ndim))
        self.layers = nn.Sequential(*layers)
        self.head_bn = _cat_bn([s.head_bn for s in students])
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
        x = x.transpose(0, 1).unsqueeze(0)  # (B, C, *S) -> the tall layout (1, C, B, *S)
        h = self.stem_bn(_conv(x, self.stem_w, None, 1, self.stem_pad))
        h = torch.relu(self.head_bn(self.layers(h)))
        b = h.shape[2]
        feats = h.reshape(self.k, -1, b, h[0, 0, 0].numel()).mean(-1).permute(2, 0, 1)  # (B, K, C_last)
        return torch.einsum("bkc,koc->bko", feats, self.cls_w) + self.cls_b


class Single(nn.Module):
    """The plain loop's model: one student, its logits shaped (batch, 1, classes) like the fused one."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, x):
        return self.student(x).unsqueeze(1)
