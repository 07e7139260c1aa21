"""Many students in one module: K architectures trained as one set of grouped convolutions.

Each student owns K-th of the channels: model ``k`` lives in channels ``[k*C, (k+1)*C)`` of every
activation. Architecture-independent layers (stem, reductions, head) become grouped convolutions with
``groups=K``. Inside a cell, the (edge, model) pairs that leave one node with the same op are
gathered into one tensor, the op runs once on it (one grouped convolution, whose parameters hold
exactly the pairs that use it, so no FLOP is spent on an op a model does not have; one pool; nothing
for a skip), and each edge's slice is added into its destination node with ``index_add``. In
training, each cell and each reduction is one autograd node with a hand-written backward
(:class:`_CellFn`, :class:`_ReductionFn`). The building blocks (grouped Conv-BN, BatchNorm, pooling,
the C-kernel dispatch for 1-D 3-tap stride-1 convolutions) and the tall layout every activation
uses, ``(1, K*C, B, ...)`` with the whole batch as one sample, are in
:mod:`danas_bench.training.fused_ops`.

Devices: the model runs wherever it is moved (``.to("cuda")``); the C kernels are the CPU path
only. Under autocast (a recipe's ``autocast: bf16``) node sums stay float32, like the BatchNorm
statistics and the hand-written backward (see :mod:`~danas_bench.training.fused_ops`).

Parameters are copied from K plain :class:`~danas_bench.training.student.Student` modules, so a fused model
starts from exactly the weights the plain loop would use; BatchNorm statistics are per channel and
optimiser updates are elementwise, so the models stay independent: only floating-point rounding
differs from training them one by one (summation order, the BatchNorm variance formula, the fused
optimiser's last bit, the C kernels' order of summation).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from danas_bench.core import space
from danas_bench.training.fused_ops import (
    CONV_OPS,
    POOL,
    SKIP,
    _bmm_conv_backward,
    _cat_bn,
    _Conv,
    _conv,
    _same_dtype,
    _tall,
    avg_pool_same,
    avg_pool_same_backward,
    conv_pack,
    grouped_conv,
)
from danas_bench.training.student import Cell, Reduction, Student


def _channels(models, c: int) -> torch.Tensor:
    return (torch.as_tensor(models, dtype=torch.long)[:, None] * c + torch.arange(c)[None, :]).reshape(-1)


class FusedCell(nn.Module):
    """One cell of K students. Every edge op is applied to exactly the (edge, model) pairs that use it:
    the users' channels are gathered (one ``index_select`` per source node for its skips and pools,
    one for its convolutions, ReLU'd in place after the gather), each op runs on its slice (a grouped
    conv, the pool, or nothing for a skip), and its output is added into its destination nodes with
    one ``index_add`` (nodes 1-3 are one buffer, so an op feeding several nodes needs no split).
    Gathering only the users costs about a fifth of the memory traffic of multiplying whole nodes by
    0/1 channel masks (docs/performance.md).

    In training the cell is one autograd node (:class:`_CellFn`) with a hand-written backward: node
    gradients accumulate in one buffer, each op's output gradient is one ``index_select`` from it and
    each input gradient one ``index_add`` into its source, ReLU's backward runs in place; autograd's
    own graph of the same ops costs zero-filled gradients for every gather, a concatenation for every
    split and a fresh tensor for every ReLU (docs/performance.md).
    """

    def __init__(self, cells: list[Cell], c: int, ndim: int):
        super().__init__()
        k_models = len(cells)
        self.c = c
        self.kc = k_models * c
        self.ndim = ndim
        ops = [cell.ops for cell in cells]
        self.convs = nn.ModuleDict()
        # key -> (source, op, [(dst, channels, offset of the piece in the op's output)])
        self.plan: dict[str, tuple[int, int, list[tuple[int, int, int]]]] = {}
        self.identity: set[str] = set()  # skips whose users are every model in order: no gather needed
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
                    width = convs[0].weight.shape[-1]
                    if len(pairs) % 2 and conv_pack(ndim, width, 1, c, len(pairs) + 1) > 1:
                        # an even group count lets _Conv pack groups: a zero group whose output is never read
                        convs.append(copy.deepcopy(convs[0]).requires_grad_(False))
                        nn.init.zeros_(convs[-1].weight)
                        bns.append(copy.deepcopy(bns[0]))
                        users.append(users[0])
                    self.convs[key] = _Conv(convs, bns, ndim)
                elif op == SKIP and users == list(range(k_models)):
                    self.identity.add(key)
                # the op's output holds each edge's models in turn; its channels' places in nodes 1-3
                scatters, places, off = [], [], 0
                for e in edges:
                    models = [k for e2, k in pairs if e2 == e]
                    if models:
                        dst = space.EDGES[e][0]
                        scatters.append((dst, len(models) * c, off))
                        places.append(_channels(models, c) + (dst - 1) * self.kc)
                        off += len(models) * c
                self.plan[key] = (src, op, scatters)
                if key in self.identity:  # each piece's channels within its destination node
                    for i, (dst, n, _) in enumerate(scatters):
                        if n != self.kc:
                            self.register_buffer(f"id_{key}_{i}", places[i] - (dst - 1) * self.kc)
                gathers[key] = _channels(users, c)  # with a padding group's copy of its first user
                self.register_buffer(f"dst_{key}", torch.cat(places))
                self.register_buffer(f"src_{key}", gathers[key][:off])
        # one gather per source node and input (raw for skips and pools, ReLU'd for the convs) instead
        # of one per op: fewer ops; a padding group reads its model's channels once more
        self.gathers: dict[tuple[int, bool], list[tuple[str, int]]] = {}  # (src, relu) -> [(key, channels)]
        for key, (src, op, _) in self.plan.items():
            if key not in self.identity:
                self.gathers.setdefault((src, op in CONV_OPS), []).append((key, len(gathers[key])))
        for (src, relu), parts in self.gathers.items():
            self.register_buffer(f"gather_{src}_{int(relu)}", torch.cat([gathers[k] for k, _ in parts]))

    def identity_pieces(self, key: str):
        """An identity skip's pieces: (destination node, the source channels, their channels in the
        destination, or None where the piece is the whole node)."""
        for i, (dst, n, off) in enumerate(self.plan[key][2]):
            yield dst, slice(off, off + n), getattr(self, f"id_{key}_{i}", None)

    def forward(self, x):
        if not (self.training and torch.is_grad_enabled()):
            return _cell_forward(self, x, lambda key, g: self.convs[key](g))[:, 2 * self.kc :]
        params = [t for m in self.convs.values() for t in (m.effective_weight(), m.bn.weight, m.bn.bias)]
        return _CellFn.apply(self, x, *params)


def _cell_forward(cell: FusedCell, x: torch.Tensor, conv) -> torch.Tensor:
    """Nodes 1-3 of the cell as one buffer (1, 3*K*C, ...); ``conv(key, gathered)`` applies a conv op."""
    kc = cell.kc
    nodes = x.new_zeros((1, 3 * kc) + x.shape[2:])
    for src in range(3):
        h = x if src == 0 else nodes[:, (src - 1) * kc : src * kc]
        inputs = {}  # key -> the gathered input of its op
        for relu in (False, True):
            parts = cell.gathers.get((src, relu))
            if parts:
                g = h.index_select(1, getattr(cell, f"gather_{src}_{int(relu)}"))
                if relu:  # on the gathered copy, in place: no full-size ReLU'd node is made
                    g = g.relu_()
                pieces = g.split([n for _, n in parts], 1) if len(parts) > 1 else [g]
                inputs.update(zip([k for k, _ in parts], pieces))
        for key, (s, op, _) in cell.plan.items():
            if s != src:
                continue
            if key in cell.identity:  # h may be a view of ``nodes``: add each piece into its node's view
                for dst, chans, idx in cell.identity_pieces(key):
                    out = nodes[:, (dst - 1) * kc : dst * kc]
                    out.add_(h) if idx is None else out.index_add_(1, idx, h[:, chans])
                continue
            if op == SKIP:
                y = inputs[key]
            elif op == POOL:
                y = avg_pool_same(inputs[key], cell.ndim)
            else:
                y = conv(key, inputs[key])
            dst_idx = getattr(cell, f"dst_{key}")
            nodes.index_add_(1, dst_idx, y[:, : len(dst_idx)])  # a padding group's output is never read
    return nodes


class _CellFn(torch.autograd.Function):
    """A training step's :class:`FusedCell` as one autograd node, backward by hand (see FusedCell).

    Inputs: the cell, its input node, then each conv op's (masked weight, BN weight, BN bias). For
    each conv op the forward keeps its ReLU'd gathered input, the convolution's output and the
    BatchNorm statistics, as autograd would; pools and skips keep nothing (they are linear)."""

    @staticmethod
    def forward(ctx, cell: FusedCell, x, *params):
        saved = {}
        weights = dict(zip(cell.convs.keys(), zip(params[0::3], params[1::3], params[2::3])))

        def conv(key, g):
            out, saved[key] = cell.convs[key].train_forward(g, *weights[key])
            return out

        nodes = _cell_forward(cell, x, conv)
        ctx.save_for_backward(*params)
        ctx.cell, ctx.saved, ctx.x_shape = cell, saved, x.shape  # intermediates: on ctx, as documented
        return nodes[:, 2 * cell.kc :]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g3):
        cell, saved = ctx.cell, ctx.saved
        params = ctx.saved_tensors
        weights = dict(zip(cell.convs.keys(), zip(params[0::3], params[1::3])))  # (conv, BN) weights
        kc = cell.kc
        grads = g3.new_empty((1, 3 * kc) + g3.shape[2:])  # gradients of nodes 1-3
        grads[:, : 2 * kc].zero_()
        grads[:, 2 * kc :].copy_(g3)
        gx = g3.new_zeros(ctx.x_shape)
        pgrads = {}
        for src in (2, 1, 0):  # a node's gradient is complete once the nodes it feeds are done
            gh = gx if src == 0 else grads[:, (src - 1) * kc : src * kc]
            for key, (s, op, _) in cell.plan.items():
                if s != src:
                    continue
                if key in cell.identity:
                    for dst, chans, idx in cell.identity_pieces(key):
                        gd = grads[:, (dst - 1) * kc : dst * kc]
                        gh.add_(gd) if idx is None else gh[:, chans].add_(gd.index_select(1, idx))
                    continue
                dst_idx = getattr(cell, f"dst_{key}")
                if op in CONV_OPS:
                    z = saved[key][1]  # saved is kept: a retained graph may run backward again
                    gy = torch.empty_like(z)
                    torch.index_select(grads, 1, dst_idx, out=gy[:, : len(dst_idx)])
                    gy[:, len(dst_idx) :].zero_()  # a padding group: its output is never read
                    gin, *pgrads[key] = cell.convs[key].train_backward(gy, saved[key], *weights[key])
                else:
                    gy = grads.index_select(1, dst_idx)
                    gin = gy if op == SKIP else avg_pool_same_backward(gy, cell.ndim)
                src_idx = getattr(cell, f"src_{key}")
                gh.index_add_(1, src_idx, gin[:, : len(src_idx)])
        flat = [t for key in cell.convs for t in pgrads[key]]
        return (None, gx, *flat)


class FusedReduction(nn.Module):
    """K students' NAS-Bench-201 residual blocks (stride 2). In training one autograd node
    (:class:`_ReductionFn`, backward by hand: ReLU backward in place, the shortcut pool's backward one
    broadcast add instead of zero-filled strided-slice gradients)."""

    def __init__(self, reds: list[Reduction], ndim: int):
        super().__init__()
        self.conv_a = _Conv([r.conv_a[1] for r in reds], [r.conv_a[2] for r in reds], ndim)
        self.conv_b = _Conv([r.conv_b[1] for r in reds], [r.conv_b[2] for r in reds], ndim)
        self.down_w = _tall([r.down[1].weight for r in reds])
        self.groups = len(reds)
        self.ndim = ndim

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            a, b = self.conv_a, self.conv_b
            return _ReductionFn.apply(
                self,
                x,
                a.effective_weight(),
                a.bn.weight,
                a.bn.bias,
                b.effective_weight(),
                b.bn.weight,
                b.bn.bias,
                self.down_w,
            )
        y = self.conv_b(F.relu(self.conv_a(F.relu(x))))
        return y + grouped_conv(self._halve(x), self.down_w, None, 1, 0, self.groups, True)

    def _add_halve_backward(self, gx: torch.Tensor, grad: torch.Tensor) -> None:
        """Add the input gradient of :meth:`_halve` (a linear map) into ``gx``, which has the input's
        shape: each input cell gets its window's gradient / count, one broadcast add. Sizes are even:
        on odd ones the residual block's two branches differ in shape (as in the plain Reduction)."""
        if self.ndim == 1:
            gx.view(*grad.shape, 2).add_(grad.unsqueeze(-1), alpha=0.5)
        else:
            h, w = grad.shape[-2:]
            gx.view(*grad.shape[:-2], h, 2, w, 2).add_(grad[..., :, None, :, None], alpha=0.25)

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


class _ReductionFn(torch.autograd.Function):
    """A training step's :class:`FusedReduction` as one autograd node: ReLU-conv_a-BN-ReLU-conv_b-BN plus
    the pooled 1x1 shortcut. Inputs: the module, x, conv_a's (masked weight, BN weight, BN bias),
    conv_b's, the shortcut weight."""

    @staticmethod
    def forward(ctx, red: FusedReduction, x, wa, bn_wa, bn_ba, wb, bn_wb, bn_bb, wd):
        ya, sa = red.conv_a.train_forward(F.relu(x), wa, bn_wa, bn_ba)
        yb, sb = red.conv_b.train_forward(ya.relu_(), wb, bn_wb, bn_bb)
        hx = red._halve(x)
        ctx.save_for_backward(wa, bn_wa, wb, bn_wb, wd)
        ctx.red, ctx.saved = red, (sa, sb, hx)
        return yb.add_(grouped_conv(hx, wd, None, 1, 0, red.groups, True))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        red = ctx.red
        sa, sb, hx = ctx.saved  # kept: a retained graph may run backward again
        wa, bn_wa, wb, bn_wb, wd = ctx.saved_tensors
        g = g.contiguous()
        gya, g_wb, g_bwb, g_bbb = red.conv_b.train_backward(g, sb, wb, bn_wb)
        gx, g_wa, g_bwa, g_bba = red.conv_a.train_backward(gya, sa, wa, bn_wa)
        ghx, g_wd = _bmm_conv_backward(g, hx, wd, red.groups)
        red._add_halve_backward(gx, ghx)
        return None, gx, g_wa, g_bwa, g_bba, g_wb, g_bwb, g_bbb, g_wd


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
        h = self.stem_bn(_same_dtype(_conv(x, self.stem_w, None, 1, self.stem_pad), x))
        h = torch.relu(self.head_bn(self.layers(h)))
        b = h.shape[2]
        feats = h.reshape(self.k, -1, b, h[0, 0, 0].numel()).mean(-1).permute(2, 0, 1)  # (B, K, C_last)
        return torch.einsum("bkc,koc->bko", feats, self.cls_w) + self.cls_b


def parameter_owners(students: list[Student]) -> list[torch.Tensor]:
    """For each parameter of ``FusedStudents(students)``, in order, which student owns each of its rows
    (first dimension): k + 1 for student k, 0 for a row no student owns (a padding group's zero weight).
    Every fused parameter stacks its students' parameters along the first dimension, so a row belongs to
    one student; a packed block's off-diagonal zeros share the row of the block's student. Read off a fused
    copy of students whose every parameter holds its owner's number, so the map follows whatever layout
    the fusion chooses. A padding group's BatchNorm copies its first user's and is counted as that
    user's; its gradient is always zero (its output is never read)."""
    marked = copy.deepcopy(students)
    with torch.no_grad():
        for k, s in enumerate(marked):
            for p in s.parameters():
                p.fill_(k + 1)
    owners = []
    for p in FusedStudents(marked).parameters():
        el = p.detach().round().long().reshape(len(p), -1)
        rows = el.max(1).values
        if not torch.equal(el.to(p.dtype), p.detach().reshape(el.shape)) or ((el != 0) & (el != rows[:, None])).any():
            raise AssertionError("a fused parameter row is not one student's copy: no owner map")
        owners.append(rows)
    return owners


class Single(nn.Module):
    """The plain loop's model: one student, its logits shaped (batch, 1, classes) like the fused one."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, x):
        return self.student(x).unsqueeze(1)
