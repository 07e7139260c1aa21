"""The fused engine's building blocks on the tall layout: grouped convolutions, BatchNorm, pooling.

Layout: the whole batch is one sample, ``(1, K*C, B, L)`` for 1-D signals and ``(1, K*C, B, H, W)``
for images, with every kernel 1 wide along the batch axis (conv2d with (1, k) kernels, conv3d with
(1, k, k) kernels), so no op mixes samples. Each channel is then one contiguous block of memory:
gathers, scatters and BatchNorm statistics run over contiguous blocks, and the grouped convolutions
see one large image per group (docs/performance.md has the measurements).

Here: :class:`_Conv` (a grouped Conv-BN over whole per-model channel blocks, packed block-diagonally
where oneDNN is slow, with the forward and backward that :mod:`danas_bench.training.fused`'s
hand-written autograd nodes call), :class:`TallBatchNorm` and :func:`_cat_bn`, the 'same' average
pool (:func:`avg_pool_same`) and the dispatch of 1-D 3-tap stride-1 convolutions to the C kernels of
:mod:`danas_bench.training.native` (:func:`uses_native`; torch's convolution where those cannot be
built, or off the CPU).

Devices: the C kernels are the CPU path only: each call checks the tensor's device and uses torch's
convolution elsewhere, and the cached pooling constants are made per device. Under autocast (a
recipe's ``autocast: bf16``) the convolutions and matmuls run in bfloat16 and return float32, so
BatchNorm statistics and the hand-written backward keep float32; the backward's convolutions run in
the forward's precision.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F

from danas_bench.core import space
from danas_bench.training import native

CPU = torch.device("cpu")  # the default device of the cached pooling constants

CONV_OPS = (space.OP_INDEX["nor_conv_1x1"], space.OP_INDEX["nor_conv_3x3"])
SKIP, POOL = space.OP_INDEX["skip_connect"], space.OP_INDEX["avg_pool_3x3"]


def _bn_forward(x, weight, bias, eps: float):
    """Training-mode BatchNorm of a tall activation: (output, batch mean, biased batch variance)."""
    rows = x.reshape(x.shape[1], -1)
    m = rows.shape[1]
    mean = rows.sum(1).div_(m)
    # var = E[x^2] - E[x]^2 in float32 loses digits where the mean is far larger than the spread
    # (relative error ~4e-5 at mean/std 10, 4e-3 at 100); the inputs of every BatchNorm of the
    # tier-S fused models stay below mean/std 3 at initialisation and through training (error
    # <= 1.1e-6 of var + eps, docs/performance.md); tests/test_engine.py checks mean/std 10
    var = torch.linalg.vector_norm(rows, 2, 1).square_().div_(m).sub_(mean * mean).clamp_min_(0.0)
    # the affine pass: evaluation-mode BatchNorm with these statistics is one vectorised pass
    return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps), mean, var


def _bn_train_stats(x, weight, bias, eps: float):
    """(output, mean, invstd for ``native_batch_norm_backward``, unbiased variance for the running
    statistics) of a training-mode BatchNorm of a tall activation."""
    out, mean, var = _bn_forward(x, weight, bias, eps)
    invstd = (var + eps).rsqrt()
    m = x[0, 0].numel()
    return out, mean, invstd, var.mul_(m / max(m - 1, 1))


def _update_running(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, unbiased: torch.Tensor) -> None:
    with torch.no_grad():
        bn.running_mean.lerp_(mean, bn.momentum)
        bn.running_var.lerp_(unbiased, bn.momentum)
        bn.num_batches_tracked.add_(1)


def _bn_train(bn: nn.modules.batchnorm._BatchNorm, x, weight, bias):
    """:class:`TallBatchNorm`'s training forward outside autograd: (output, mean, invstd) for
    ``native_batch_norm_backward``; updates ``bn``'s running statistics."""
    out, mean, invstd, unbiased = _bn_train_stats(x, weight, bias, bn.eps)
    _update_running(bn, mean, unbiased)
    return out, mean, invstd


class _TallBNTrain(torch.autograd.Function):
    """Training-mode BatchNorm of a tall activation ``(1, C, ...)``: the statistics from two row
    reductions (a sum and a 2-norm per channel) and the output from evaluation-mode BatchNorm with
    them (one pass); three passes over the input instead of ``native_batch_norm``'s slower training
    forward (docs/performance.md). The backward is PyTorch's own ``native_batch_norm_backward``."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        out, mean, invstd, unbiased = _bn_train_stats(x, weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(mean, unbiased)
        return out, mean, unbiased

    @staticmethod
    def backward(ctx, grad, _mean, _var):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps, list(ctx.needs_input_grad[:3])
        )
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
        _update_running(self, mean, var)
        return out


def _cat_bn(bns: list[nn.modules.batchnorm._BatchNorm]) -> nn.Module:
    """One BatchNorm over the channels of several; they must agree on eps and momentum and be affine
    with running statistics (the students' defaults), which is what TallBatchNorm implements."""
    b0 = bns[0]
    if (
        any((b.eps, b.momentum, b.affine, b.track_running_stats) != (b0.eps, b0.momentum, True, True) for b in bns)
        or b0.momentum is None
    ):
        raise ValueError(
            "fused BatchNorms must share eps and a float momentum, be affine and track running "
            "statistics (nn.BatchNorm's defaults)"
        )
    out = TallBatchNorm(sum(b.num_features for b in bns), eps=b0.eps, momentum=b0.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, name).copy_(torch.cat([getattr(b, name) for b in bns]))
    return out


def _same_dtype(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in ``x``'s dtype: under autocast a convolution or matmul returns bfloat16, and the fused
    model keeps its activations in float32 (a no-op, the same tensor, otherwise)."""
    return y if y.dtype == x.dtype else y.to(x.dtype)


def _lowp(device: torch.device) -> torch.dtype | None:
    """The autocast dtype active for ``device`` now, or None (also on devices autocast does not know)."""
    t = device.type
    return torch.get_autocast_dtype(t) if torch.amp.is_autocast_available(t) and torch.is_autocast_enabled(t) else None


@functools.cache
def _inv_count(w: int, k: int, device: torch.device = CPU) -> torch.Tensor:
    """1 / (number of non-padding cells) of a stride-1 'same' 1-D average pool: count_include_pad=False.
    Cached per device, so made outside inference mode (evaluation) even when first asked for there: an
    inference tensor cannot be saved for a later training step's backward."""
    with torch.inference_mode(False):
        cnt = F.conv1d(torch.ones(1, 1, w), torch.ones(1, 1, k), padding=k // 2)
        return (1.0 / cnt).reshape(w).to(device)


@functools.cache
def _pool_matrix(shape: tuple[int, ...], k: int, device: torch.device = CPU) -> torch.Tensor:
    """(n, n) matrix M, n = prod(shape), with ``x.flatten() @ M`` = the 'same' k-wide average pool
    over a plane (or row) of ``shape``, padding excluded from the counts (folded in). Made on the CPU
    outside inference mode, like :func:`_inv_count`, and cached per device."""

    def band(n: int) -> torch.Tensor:
        i = torch.arange(n)
        return ((i[:, None] - i[None, :]).abs() <= k // 2).float()

    with torch.inference_mode(False):
        m = band(shape[0])
        for n in shape[1:]:
            m = torch.kron(m, band(n))  # m[i, j] = 1: input position i lies in output j's window
        return (m / m.sum(0, keepdim=True)).to(device)


# planes from this many positions up (14x14, 28x28, 32x32) pool as two thin matmuls, one per axis
SEPARABLE_MIN = 196


def _separable(x: torch.Tensor, k: int, transpose: bool) -> torch.Tensor:
    """``x`` pooled over its last two dims with ``kron(A_H, A_W)`` (or its transpose) as one matmul
    along W and one along H; ``A`` is an axis' 1-D pool matrix (:func:`_pool_matrix` of one dim), and the
    plane's dense matrix is their Kronecker product since a position's count is the product of its axes'."""
    h, w = x.shape[-2:]
    ah, aw = _pool_matrix((h,), k, x.device), _pool_matrix((w,), k, x.device)
    if transpose:
        ah, aw = ah.T, aw.T
    y = _same_dtype(x.reshape(-1, w) @ aw, x).view(-1, h, w)
    return _same_dtype(torch.matmul(ah.T, y), x).view(x.shape)


def avg_pool_same(x: torch.Tensor, ndim: int, k: int = 3) -> torch.Tensor:
    """The 'same' k-wide average pool over the last ``ndim`` dims (NAS-Bench-201's avg_pool_3x3:
    stride 1, padding excluded from the count).

    As one matmul over the flattened positions (forward and backward are a single GEMM each, counts
    folded into the matrix), or, for short 1-D rows where that GEMM is too thin, as a depthwise
    convolution with a ones kernel times a per-position 1/count. Both beat ``F.avg_pool2d`` on CPU at
    these sizes by 2-6x (docs/performance.md). Planes of :data:`SEPARABLE_MIN` positions and more
    (tier M's 28x28 and 14x14) pool separably: the dense matrix's cost grows with the square of the
    plane, two 1-D passes' only linearly (3.4x faster at 28x28, 2x at 14x14; slower below).
    """
    shape = tuple(x.shape[-ndim:])
    if ndim == 1 and shape[0] < 16:
        return _window_sums(x, k) * _inv_count(shape[0], k, x.device)
    n = shape[0] if ndim == 1 else shape[0] * shape[1]
    if ndim == 2 and n >= SEPARABLE_MIN:
        return _separable(x, k, transpose=False)
    return _same_dtype(x.reshape(-1, n) @ _pool_matrix(shape, k, x.device), x).reshape(x.shape)


def avg_pool_same_backward(grad: torch.Tensor, ndim: int, k: int = 3) -> torch.Tensor:
    """The input gradient of :func:`avg_pool_same`, a linear map: the transposed matmul, or the
    (symmetric) window sums of ``grad / count``."""
    shape = tuple(grad.shape[-ndim:])
    if ndim == 1 and shape[0] < 16:
        return _window_sums(grad * _inv_count(shape[0], k, grad.device), k)
    n = shape[0] if ndim == 1 else shape[0] * shape[1]
    if ndim == 2 and n >= SEPARABLE_MIN:
        return _separable(grad, k, transpose=True)
    return (grad.reshape(-1, n) @ _pool_matrix(shape, k, grad.device).T).reshape(grad.shape)


def _window_sums(x: torch.Tensor, k: int) -> torch.Tensor:
    """Zero-padded k-wide window sums along the last dim: a depthwise convolution with a ones kernel."""
    c = x.shape[1]
    ones = torch.ones(c, 1, *([1] * (x.dim() - 3)), k, dtype=x.dtype, device=x.device)
    pad = (0,) * (x.dim() - 3) + (k // 2,)
    conv = F.conv2d if x.dim() == 4 else F.conv1d
    return conv(x, ones, None, 1, pad, 1, c)


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


def _bmm_conv_backward(grad, x, w, groups: int):
    """(input gradient, weight gradient) of :func:`grouped_conv`'s batched-matmul path without bias."""
    cols, w3 = x.reshape(groups, x.shape[1] // groups, -1), w.reshape(groups, -1, x.shape[1] // groups)
    gy = grad.reshape(groups, w3.shape[1], -1)
    return torch.bmm(w3.transpose(1, 2), gy).view(x.shape), torch.bmm(gy, cols.transpose(1, 2)).view(w.shape)


def uses_native(ndim: int, k: int, stride: int, device: torch.device | str = "cpu") -> bool:
    """Whether a convolution runs on the C kernels (:mod:`danas_bench.training.native`): 1-D, 3 taps, stride 1,
    CPU tensors (on any other device torch's kernels run). On 2-D 3x3 convolutions the same approach
    (9 masked taps) was slower than oneDNN's in the backward pass (docs/performance.md), so those keep
    torch's."""
    return torch.device(device).type == "cpu" and ndim == 1 and k == 3 and stride == 1 and native.available()


def conv_pack(ndim: int, k: int, stride: int, c_in: int, groups: int) -> int:
    """How many groups a :class:`_Conv` packs per block: none for a 1x1 stride-1 kernel (a batched
    matmul) or a C kernel, else :func:`pack_factor`."""
    return 1 if (k == 1 and stride == 1) or uses_native(ndim, k, stride) else pack_factor(c_in, groups)


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
        self.bmm = w.shape[-1] == 1 and s == 1  # a batched matmul (grouped_conv)
        self.native = uses_native(ndim, w.shape[-1], s)
        pack = conv_pack(ndim, w.shape[-1], s, ci, g)
        if pack > 1:
            blocks = torch.zeros(g // pack, pack * co, pack * ci, *w.shape[2:])
            mask = torch.zeros_like(blocks)
            for j in range(g):
                q, r = divmod(j, pack)
                blocks[q, r * co : (r + 1) * co, r * ci : (r + 1) * ci] = w[j * co : (j + 1) * co]
                mask[q, r * co : (r + 1) * co, r * ci : (r + 1) * ci] = 1.0
            w = blocks.reshape(g * co, pack * ci, *w.shape[2:])
            self.register_buffer("mask", mask.reshape(w.shape))
        else:
            self.mask = None
        self.weight = nn.Parameter(w)
        self.groups = g // pack
        self.stride = (1,) + (s,) * ndim
        self.padding = (0,) + (p,) * ndim
        self.bn = _cat_bn(bns)

    def effective_weight(self) -> torch.Tensor:
        """The weight with a packed conv's off-diagonal blocks masked to zero."""
        return self.weight if self.mask is None else self.weight * self.mask

    def conv(self, x, w, bias=None):
        """The convolution alone (no BatchNorm). The C kernels have no autograd: where a graph is being
        recorded through x or w, torch's convolution runs instead (the engine's own backward calls
        :meth:`conv_backward`)."""
        if self._native(x) and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)):
            return native.conv3(x, w, bias, self.groups)
        return _same_dtype(grouped_conv(x, w, bias, self.stride, self.padding, self.groups, self.bmm), x)

    def _native(self, x: torch.Tensor) -> bool:
        """The C kernels for this call: a native-shaped conv (decided at build) on a float32 CPU tensor."""
        return self.native and x.device.type == "cpu" and x.dtype == torch.float32

    def conv_backward(self, grad, x, w, lowp: torch.dtype | None = None):
        """(input gradient, weight gradient) of :meth:`conv` without bias; ``lowp``: in that dtype (the
        forward's autocast), returned in float32."""
        if lowp is not None and not self._native(x):
            gx, gw = self.conv_backward(grad.to(lowp), x.to(lowp), w.to(lowp))
            return gx.to(x.dtype), gw.to(w.dtype)
        if self._native(x):
            return native.conv3_backward(grad, x, w, self.groups)
        if self.bmm:
            return _bmm_conv_backward(grad, x, w, self.groups)
        n = w.dim() - 2
        gx, gw, _ = torch.ops.aten.convolution_backward(
            grad,
            x,
            w,
            None,
            list(self.stride),
            list(self.padding),
            [1] * n,
            False,
            [0] * n,
            self.groups,
            [True, True, False],
        )
        return gx, gw

    def train_forward(self, x, w, bn_w, bn_b):
        """Conv-BN of a ReLU output ``x`` in a training step outside autograd: (output, what
        :meth:`train_backward` needs); updates the BatchNorm's running statistics."""
        z = self.conv(x, w)
        out, mean, invstd = _bn_train(self.bn, z, bn_w, bn_b)
        return out, (x, z, mean, invstd, _lowp(x.device))

    def train_backward(self, grad, saved, w, bn_w):
        """(input gradient through the ReLU that made ``x``, weight, BN weight and BN bias gradients)."""
        x, z, mean, invstd, lowp = saved
        gz, g_bw, g_bb = torch.ops.aten.native_batch_norm_backward(
            grad, z, bn_w, None, None, mean, invstd, True, self.bn.eps, [True, True, True]
        )
        gx, g_w = self.conv_backward(gz, x, w, lowp)
        torch.ops.aten.threshold_backward.grad_input(gx, x, 0.0, grad_input=gx)  # ReLU, in place
        return gx, g_w, g_bw, g_bb

    def forward(self, x):  # x is already ReLU'd where the op needs it
        w = self.effective_weight()
        if self.training:
            return self.bn(self.conv(x, w))
        # evaluation: BatchNorm with running statistics is an affine map, folded into the convolution
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        w = w * scale.view(-1, *[1] * (w.dim() - 1))
        return self.conv(x, w, bn.bias - bn.running_mean * scale)
