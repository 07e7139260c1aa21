"""Speed of the engine's building blocks against the PyTorch ops they replace, with pytest-benchmark.

Run it explicitly, one thread (the engine's workers run one each), nothing else busy::

    OMP_NUM_THREADS=1 .venv/bin/pytest tests/bench_engine_kernels.py --benchmark-enable -p no:cacheprovider

Shapes are those of 64 fused mnist1d students (width 4, batch 64): every node of every stage is
655,360 floats (256 channels x 64 x 40, 512 x 64 x 20, 1,024 x 64 x 10). Groups (pytest-benchmark
prints each row's ratio to the fastest of its group):

- ``bn-forward`` / ``bn-train-step``: training-mode BatchNorm, forward alone and forward + backward,
  ``nn.BatchNorm2d`` (``native_batch_norm``) vs the engine's ``TallBatchNorm``;
- ``sgd``: one SGD step (Nesterov, weight decay) over 80 parameter tensors shaped like a fused model's,
  PyTorch's default (per-parameter loop) vs ``fused=True``;
- ``conv3-forward`` / ``conv3-train-step``: a cell's 3-tap convolution (the users of one op, 48 of the
  64 students' groups), forward alone and forward + both gradients: torch's ``conv2d`` as the engine
  ran it before (oneDNN, two 4-channel groups packed into one 8-channel block at stage 1) vs the C
  kernels of ``danas_bench.training.native`` (unpacked).

glibc's page faults (``engine.keep_freed_memory``) are process-wide, so they are not benchmarked here
side by side: ``tests/test_engine.py::test_freed_activations_stay_in_the_heap`` counts them.
"""

from __future__ import annotations

import pytest
import torch

from danas_bench.training import engine, native
from danas_bench.training.fused_ops import TallBatchNorm

SHAPES = {"stage1": (1, 256, 64, 40), "stage3": (1, 1024, 64, 10)}


@pytest.fixture(autouse=True)
def one_thread():
    engine.keep_freed_memory()  # as in training: both sides under the same allocator settings
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _bn(kind: str, c: int):
    return torch.nn.BatchNorm2d(c) if kind == "native" else TallBatchNorm(c)


@pytest.mark.parametrize("stage", list(SHAPES))
@pytest.mark.parametrize("kind", ["native", "tall"])
def test_bn_forward(benchmark, kind, stage):
    benchmark.group = f"bn-forward-{stage}"
    x = torch.randn(SHAPES[stage])
    bn = _bn(kind, x.shape[1])
    with torch.no_grad():
        benchmark(bn, x)


@pytest.mark.parametrize("stage", list(SHAPES))
@pytest.mark.parametrize("kind", ["native", "tall"])
def test_bn_train_step(benchmark, kind, stage):
    benchmark.group = f"bn-train-step-{stage}"
    x = torch.randn(SHAPES[stage], requires_grad=True)
    g = torch.randn(SHAPES[stage])
    bn = _bn(kind, x.shape[1])
    benchmark(lambda: bn(x).backward(g))


@pytest.mark.parametrize("fused", [False, True], ids=["default", "fused"])
def test_sgd_step(benchmark, fused):
    benchmark.group = "sgd"
    params = [torch.randn(s, requires_grad=True) for s in [(256, 8, 1, 3)] * 40 + [(256,)] * 40]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=fused or None)
    benchmark(opt.step)


CONV_SHAPES = {"stage1": (48, 4, 40), "stage2": (48, 8, 20), "stage3": (48, 16, 10)}  # groups, channels, length


def _conv3_case(kind: str, stage: str):
    g, c, length = CONV_SHAPES[stage]
    pack = 2 if kind == "torch" and c == 4 else 1  # what the engine did with torch's conv2d
    x = torch.randn(1, g * c, 64, length)
    w = torch.randn(g * c, c * pack, 1, 3)
    return x, w, g // pack


@pytest.mark.skipif(not native.available(), reason="no C compiler")
@pytest.mark.parametrize("stage", list(CONV_SHAPES))
@pytest.mark.parametrize("kind", ["torch", "native"])
@pytest.mark.parametrize("what", ["forward", "train-step"])
def test_conv3(benchmark, kind, stage, what):
    """Forward alone, or forward + input and weight gradients."""
    benchmark.group = f"conv3-{what}-{stage}"
    x, w, groups = _conv3_case(kind, stage)
    g = torch.randn(x.shape)

    def forward():
        if kind == "torch":
            return torch.nn.functional.conv2d(x, w, None, 1, (0, 1), 1, groups)
        return native.conv3(x, w, None, groups)

    def step():
        forward()
        if kind == "torch":
            return torch.ops.aten.convolution_backward(
                g, x, w, None, [1, 1], [0, 1], [1, 1], False, [0, 0], groups, [True, True, False]
            )
        return native.conv3_backward(g, x, w, groups)

    benchmark(forward if what == "forward" else step)
