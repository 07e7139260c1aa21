"""The fused engine computes what the plain loop computes, and records everything a row needs."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from danas_bench.core import space
from danas_bench.core.recipe import KD, Recipe
from danas_bench.training import data, engine, native
from danas_bench.training.fused import FusedCell, FusedReduction, FusedStudents, parameter_owners
from danas_bench.training.fused_ops import (
    CONV_OPS,
    SEPARABLE_MIN,
    TallBatchNorm,
    avg_pool_same,
    avg_pool_same_backward,
    pack_factor,
)
from danas_bench.training.student import Reduction

TINY = {"width": 4, "epochs": 1, "batch_size": 32}


# fashion-mnist's 28x28 and 14x14 planes take the separable pool (digits' 8x8 the dense one); .ci/run installs it
FASHION = pytest.param(
    "fashion-mnist",
    marks=pytest.mark.skipif(not data.available("fashion-mnist"), reason="dataset-fashion-mnist not installed"),
)


@pytest.fixture(scope="module")
def archs():
    rng = np.random.default_rng(7)
    picks = list(space.sample(rng, 6, canonical_only=True))
    return picks + [0, space.to_index([3] * 6), space.to_index([4] * 6), space.to_index([1] * 6)]


@pytest.mark.parametrize("dataset", ["digits", "mnist1d", FASHION])
def test_fused_forward_equals_plain_students(dataset, archs):
    task = engine.Task.make(Recipe(dataset, **TINY), KD("none"))
    students = engine._students(archs, 3, task)
    fused = FusedStudents(students)
    x = task.dataset.x["train"][:20]
    for mode in ("train", "eval"):
        fused.train(mode == "train")
        for s in students:
            s.train(mode == "train")
        with torch.no_grad():
            ref = torch.stack([s(x) for s in students], 1)
            out = fused(x)
        assert out.shape == (20, len(archs), 10)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_eval_batch_holds_about_32_images_of_28x28_and_never_changes_the_logits(archs):
    """The evaluation batch shrinks with the input's plane (cache), to 16 at the least, 128 at the most; a GPU
    takes 1024. Eval-mode logits are per example, so every batch size gives the same bits."""
    cpu = torch.device("cpu")
    assert [engine.eval_batch(cpu, s) for s in [(1, 40), (1, 8, 8), (1, 28, 28), (3, 32, 32)]] == [128, 128, 32, 16]
    assert engine.eval_batch(torch.device("cuda"), (3, 32, 32)) == 1024
    task = engine.Task.make(Recipe("digits", **TINY), KD("none"))
    fused = FusedStudents(engine._students(archs, 5, task))
    x, y, _ = task.train_split()
    opt = torch.optim.SGD(fused.parameters(), lr=0.1)
    for i in range(0, 96, 32):  # trained BatchNorm statistics, not the initial ones
        F.cross_entropy(fused(x[i : i + 32]).flatten(0, 1), y[i : i + 32].repeat_interleave(len(archs))).backward()
        opt.step()
        opt.zero_grad()
    vx = task.dataset.x["valid"][:100]  # 100: every batch size below leaves a short last batch
    ref = engine._predict(fused, vx, bs=128)
    for bs in (16, 32, 64):
        assert torch.equal(engine._predict(fused, vx, bs=bs), ref)


@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
@pytest.mark.parametrize("n", [9, 8])
def test_fused_gradients_equal_plain_and_packed_blocks_stay_zero(dataset, archs, n):
    """The backward pass (in-place node sums, split conv outputs, block-diagonal packed groups) gives
    every student the gradient it gets alone, and an SGD step never moves an off-diagonal block."""
    task = engine.Task.make(Recipe(dataset, **TINY), KD("none"))
    # 9: an odd count needs a padding group where torch's convolutions pack the cells' 3x3 convs; 8: the
    # reductions' stride-2 convolutions (torch's in any case) pack
    students = engine._students(archs[:n], 2, task)
    fused = FusedStudents(students)
    x, y = task.dataset.x["train"][:16], task.dataset.y["train"][:16]
    out = fused(x)
    torch.nn.functional.cross_entropy(out.reshape(-1, 10), y.repeat_interleave(len(students))).backward()
    for k, s in enumerate(students):
        torch.nn.functional.cross_entropy(s(x), y).div(len(students)).backward()
        c = s.stem[0].weight.shape[0]
        torch.testing.assert_close(
            fused.stem_w.grad[k * c : (k + 1) * c].reshape(s.stem[0].weight.shape),
            s.stem[0].weight.grad,
            rtol=1e-3,
            atol=1e-5,
        )
    packed = [m for m in fused.modules() if getattr(m, "mask", None) is not None]
    if n % 2 == 0 or dataset == "digits" or not native.available():  # 1-D 3-tap convs: unpacked C kernels
        assert packed, "width 4 should pack groups"
    opt = torch.optim.SGD(fused.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt.step()
    for m in packed:
        assert torch.count_nonzero(m.weight * (1 - m.mask)) == 0


def _block(w: torch.Tensor, j: int, co: int, ci: int, pack: int) -> torch.Tensor:
    """Group j's (co, ci, ...) weight inside a fused conv weight packed ``pack`` groups per block."""
    return w[j * co : (j + 1) * co, (j % pack) * ci : (j % pack + 1) * ci].squeeze(2)


@pytest.fixture(params=["native", "torch"])
def kernels(request, monkeypatch):
    """Run a test with the C kernels (where they build) and with torch's convolutions (DANAS_NATIVE=0);
    the choice is made when a fused model is built."""
    if request.param == "native" and not native.available():
        pytest.skip("no C compiler")
    if request.param == "torch":
        monkeypatch.setenv("DANAS_NATIVE", "0")
        native._lib.cache_clear()
    yield request.param
    monkeypatch.undo()
    native._lib.cache_clear()


def _float64(monkeypatch, request) -> None:
    """Models built from here on, and the pool's cached constants, in float64 for the rest of the test (the C
    kernels serve float32 only, so torch's convolutions run)."""
    from danas_bench.training import fused_ops

    request.addfinalizer(functools.partial(torch.set_default_dtype, torch.get_default_dtype()))
    torch.set_default_dtype(torch.float64)
    for name in ("_pool_matrix", "_inv_count"):
        made = getattr(fused_ops, name)
        monkeypatch.setattr(fused_ops, name, lambda *a, _made=made, **k: _made(*a, **k).double())


def _ops(*names):
    return space.to_index([space.OP_INDEX[n] for n in names])


# three architectures whose cells take every path of the fused cell: on source 0 every model skips on
# a different edge (an identity skip split into pieces), on source 1 all skip on edge 3<-1 (a whole-node
# identity), one skip on 3<-2 (a gathered skip), and convolutions and pools around them
IDENTITY_ARCHS = [
    _ops("skip_connect", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "nor_conv_3x3"),
    _ops("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "skip_connect", "skip_connect"),
    _ops("nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3", "skip_connect", "skip_connect", "nor_conv_1x1"),
]


@pytest.mark.parametrize("dataset", ["digits", "mnist1d", FASHION])
@pytest.mark.parametrize("which", ["sample", "identity-skips"])
def test_fused_training_step_equals_plain(dataset, archs, which, kernels, monkeypatch, request):
    """One training step (forward with autograd, the hand-written backward) gives every (edge, model)
    pair's conv and BatchNorm parameters, and the stem, the gradients the pair's plain module gets, and
    leaves the same BatchNorm running statistics."""
    task = engine.Task.make(Recipe(dataset, **TINY), KD("none"))
    tol = {"rtol": 1e-3, "atol": 1e-6}
    if dataset == "fashion-mnist":
        # in float32, BatchNorm over 16 x 28 x 28 positions a channel amplifies rounding on some cells (the stem
        # gradient of one of these nine differs by 0.4% of its scale, with the dense pool as with the separable
        # one): compare in float64, where the fused step and the plain modules agree to ~1e-7 of the scale
        _float64(monkeypatch, request)
        tol = {"rtol": 1e-5, "atol": 1e-8}
    students = engine._students(archs[:9] if which == "sample" else IDENTITY_ARCHS, 4, task)
    fused = FusedStudents(students)
    cells = [m for m in fused.layers if isinstance(m, FusedCell)]
    if which == "identity-skips":
        assert all(cell.identity == {"s0o1", "s1o1"} for cell in cells), [cell.identity for cell in cells]
    x, y = task.dataset.x["train"][:16].to(torch.get_default_dtype()), task.dataset.y["train"][:16]
    torch.nn.functional.cross_entropy(fused(x).reshape(-1, 10), y.repeat_interleave(len(students))).backward()
    for s in students:
        torch.nn.functional.cross_entropy(s(x), y).div(len(students)).backward()
    c = students[0].stem[0].weight.shape[0]
    for k, s in enumerate(students):
        torch.testing.assert_close(
            fused.stem_w.grad[k * c : (k + 1) * c].reshape(s.stem[0].weight.shape), s.stem[0].weight.grad, **tol
        )
    checked = 0
    for pos, layer in enumerate(fused.layers):
        if not isinstance(layer, FusedCell):
            continue
        for key, conv in layer.convs.items():
            src, op = int(key[1]), int(key.split("o")[1])
            assert op in CONV_OPS
            edges = [e for e, (_, s) in enumerate(space.EDGES) if s == src]
            pairs = [(e, k) for e in edges for k in range(len(students)) if students[k].ops[e] == op]
            e0, k0 = pairs[0]
            co, ci = students[k0].layers[pos].edges[e0][1].weight.shape[:2]
            pack = conv.weight.shape[1] // ci
            for j, (e, k) in enumerate(pairs):
                plain = students[k].layers[pos].edges[e]
                torch.testing.assert_close(_block(conv.weight.grad, j, co, ci, pack), plain[1].weight.grad, **tol)
                rows = slice(j * co, (j + 1) * co)
                for name in ("weight", "bias"):
                    torch.testing.assert_close(getattr(conv.bn, name).grad[rows], getattr(plain[2], name).grad, **tol)
                for name in ("running_mean", "running_var"):
                    torch.testing.assert_close(
                        getattr(conv.bn, name)[rows], getattr(plain[2], name), rtol=1e-4, atol=1e-6
                    )
                checked += 1
    assert checked >= 3 * len(cells)


@pytest.mark.parametrize("ndim,size", [(1, (8,)), (1, (40,)), (2, (4, 4)), (2, (4, 6))])
@pytest.mark.parametrize("groups", [3, 4])
def test_fused_reduction_backward_equals_plain(ndim, size, groups, kernels):
    """The reduction's hand-written backward (the shortcut pool's included) gives the input and every
    parameter the plain blocks' gradients; 4 groups pack the stride-2 convolution's weights."""
    torch.manual_seed(0)
    reds = [Reduction(4, 8, ndim) for _ in range(groups)]
    fused = FusedReduction(reds, ndim)
    assert (fused.conv_a.mask is not None) == (groups == 4)
    x = torch.randn(6, groups * 4, *size)
    xs = [x[:, 4 * k : 4 * (k + 1)].clone().requires_grad_(True) for k in range(groups)]
    xt = x.transpose(0, 1).unsqueeze(0).clone().requires_grad_(True)  # the tall layout
    out = fused(xt)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    tol = {"rtol": 1e-4, "atol": 1e-5}
    for k, (red, xk) in enumerate(zip(reds, xs)):
        ref = red(xk)
        rows = slice(8 * k, 8 * (k + 1))
        torch.testing.assert_close(out[0, rows].transpose(0, 1), ref, **tol)
        (ref * g[0, rows].transpose(0, 1)).sum().backward()
        torch.testing.assert_close(xt.grad[0, 4 * k : 4 * (k + 1)].transpose(0, 1), xk.grad, **tol)
        torch.testing.assert_close(fused.down_w.grad[rows].squeeze(2), red.down[1].weight.grad, **tol)
        for mine, plain, ci in ((fused.conv_a, red.conv_a, 4), (fused.conv_b, red.conv_b, 8)):
            pack = mine.weight.shape[1] // ci
            torch.testing.assert_close(_block(mine.weight.grad, k, 8, ci, pack), plain[1].weight.grad, **tol)
            for name in ("weight", "bias"):
                torch.testing.assert_close(getattr(mine.bn, name).grad[rows], getattr(plain[2], name).grad, **tol)
            for name in ("running_mean", "running_var"):
                torch.testing.assert_close(getattr(mine.bn, name)[rows], getattr(plain[2], name), **tol)


def test_avg_pool_same_backward_is_the_adjoint():
    """<pool(x), g> = <x, pool_backward(g)> on every path (matmul, window sums, separable planes)."""
    for shape, ndim in (((1, 3, 4, 40), 1), ((1, 3, 4, 10), 1), ((1, 3, 4, 5, 6), 2), ((1, 3, 2, 14, 17), 2)):
        x, g = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
        lhs = (avg_pool_same(x.float(), ndim).double() * g).sum()
        rhs = (x * avg_pool_same_backward(g.float(), ndim).double()).sum()
        torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-5)


def test_pack_factor():
    assert pack_factor(4, 64) == 2 and pack_factor(2, 64) == 4 and pack_factor(8, 64) == 1
    assert pack_factor(4, 63) == 1 and pack_factor(2, 6) == 2


def test_avg_pool_same_matches_torch():
    """The pool over the last dims of the tall layout (batch in a leading axis) equals torch's."""
    for plane in ((6, 7), (14, 14), (28, 28), (13, 16)):  # the dense matrix below 196 positions, separable above
        assert (plane[0] * plane[1] >= SEPARABLE_MIN) == (plane[0] >= 13)
        x = torch.randn(3, 5, *plane)
        ref = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        torch.testing.assert_close(avg_pool_same(x.transpose(0, 1)[None], 2)[0].transpose(0, 1), ref)
    for length in (7, 40):  # short 1-D rows take the convolution path, long ones the matmul
        rows = torch.randn(4, 3, length)
        ref1 = torch.nn.functional.avg_pool1d(rows, 3, 1, 1, count_include_pad=False)
        torch.testing.assert_close(avg_pool_same(rows.transpose(0, 1)[None], 1)[0].transpose(0, 1), ref1)


@pytest.mark.parametrize("shape,mean", [((1, 12, 16, 40), 2.0), ((1, 6, 8, 5, 5), 2.0), ((1, 12, 16, 40), 30.0)])
def test_tall_batch_norm_matches_torch_batch_norm(shape, mean):
    """The engine's BatchNorm (own forward, native backward) equals nn.BatchNorm on the same channels:
    output, input and parameter gradients, running statistics, and the evaluation-mode output."""
    torch.manual_seed(0)
    ref = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm3d)(shape[1])
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    tall = TallBatchNorm(shape[1])
    tall.load_state_dict(ref.state_dict())
    x = (torch.randn(shape) * 3 + mean).requires_grad_(True)  # mean / std 0.7, and 10: E[x^2] - E[x]^2 holds
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(shape)
    tol = 1e-5 if mean < 10 else 2e-4  # float32 E[x^2] - E[x]^2 at mean / std 10: ~4e-5 relative
    for _ in range(2):  # two steps: the running statistics are updated, not just set
        (ref(x) * g).sum().backward()
        (tall(x2) * g).sum().backward()
    torch.testing.assert_close(tall(x2), ref(x), atol=tol, rtol=tol)
    torch.testing.assert_close(x2.grad, x.grad, atol=tol, rtol=tol)
    torch.testing.assert_close(tall.weight.grad, ref.weight.grad, atol=10 * tol, rtol=tol)
    torch.testing.assert_close(tall.bias.grad, ref.bias.grad)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(tall, name), getattr(ref, name), atol=tol, rtol=tol)
    ref.eval(), tall.eval()
    torch.testing.assert_close(tall(x2), ref(x), atol=tol, rtol=tol)
    with pytest.raises(ValueError, match="tall activation"):
        tall(torch.randn(2, shape[1], 4, 4))


def test_train_many_matches_plain_loop_and_fills_records(archs):
    task = engine.Task.make(Recipe("digits", **TINY), KD("resnet"))
    fused = engine.train_many(archs[:4], 0, task)
    plain = [engine.train_plain(a, 0, task) for a in archs[:4]]
    # same initial weights and minibatches: only float rounding differs, which SGD at lr 0.1
    # amplifies on some architectures (one of these four ends 0.028 apart with one thread, 0 with two;
    # the plain loop alone differs that much between thread counts), so the bound is on the mean
    diffs = [abs(f["test_acc"] - p["test_acc"]) for f, p in zip(fused, plain)]
    assert np.mean(diffs) <= 0.02 and max(diffs) <= 0.05, diffs
    for f, p in zip(fused, plain):
        assert f["arch_index"] == p["arch_index"] and f["arch"] == space.arch_str(f["arch_index"])
        assert len(f["train_loss"]) == len(f["valid_acc_curve"]) == len(f["epoch_seconds"]) == 1
        assert 0.0 <= f["test_acc"] <= 1.0 and 0.0 <= f["test_ece"] <= 1.0
        assert f["test_agreement"] is not None and f["test_kl_teacher"] >= 0.0
        assert f["train_seconds"] > 0 and f["kd_alpha"] == pytest.approx(0.9)


@pytest.mark.parametrize("dataset", ["digits", "mnist1d", FASHION])
def test_per_student_clipping_is_clip_grad_norm_on_each_plain_student(dataset, archs, monkeypatch, request):
    """The owner map partitions the fused parameters by student: each student's gradient norm read through
    it is its plain module's, and clipping scales each student's gradient as ``clip_grad_norm_`` scales its
    plain module's (a cap at the median norm: some students are clipped, some not)."""
    tol = {"rtol": 1e-3, "atol": 1e-6}
    if dataset == "fashion-mnist":  # float32 BatchNorm over 28x28 planes: see test_fused_training_step_equals_plain
        _float64(monkeypatch, request)
        tol = {"rtol": 1e-5, "atol": 1e-8}
    task = engine.Task.make(Recipe(dataset, **TINY), KD("none"))
    students = engine._students(archs[:9], 3, task)  # 9: an odd count, so padding groups too
    fused = FusedStudents(students)
    owners = parameter_owners(students)
    assert [o.shape for o in owners] == [p.shape[:1] for p in fused.parameters()]
    x, y = task.dataset.x["train"][:16].to(torch.get_default_dtype()), task.dataset.y["train"][:16]
    F.cross_entropy(fused(x).reshape(-1, 10), y.repeat_interleave(len(students))).backward()
    for s in students:
        F.cross_entropy(s(x), y).div(len(students)).backward()
    plain = torch.stack(
        [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in s.parameters()])) for s in students]
    )
    max_norm = float(plain.median())
    clip = engine.ClipPerStudent(list(fused.parameters()), owners, len(students), max_norm)
    torch.testing.assert_close(clip.norms().to(plain.dtype), plain, **tol)
    clip()
    for s in students:
        torch.nn.utils.clip_grad_norm_(s.parameters(), max_norm)
    clipped = torch.minimum(plain, torch.tensor(max_norm, dtype=plain.dtype))
    torch.testing.assert_close(clip.norms().to(plain.dtype), clipped, **tol)
    assert (plain > max_norm * 1.01).sum() >= 2 and (plain < max_norm * 0.99).sum() >= 2
    c = students[0].stem[0].weight.shape[0]
    for k, s in enumerate(students):
        got = fused.stem_w.grad[k * c : (k + 1) * c].reshape(s.stem[0].weight.shape)
        torch.testing.assert_close(got, s.stem[0].weight.grad, **tol)
        torch.testing.assert_close(fused.cls_w.grad[k], s.classifier.weight.grad, **tol)


def test_clipped_recipe_trains_alike_in_the_engine_and_the_plain_loop(archs):
    """A recipe with ``grad_clip`` clips in both paths (a tight cap changes the training) and they agree as
    unclipped training does; a recipe without it keeps its id."""
    clipped = Recipe("digits", grad_clip=0.05, **TINY)
    assert Recipe("digits", **TINY).recipe_id != clipped.recipe_id
    assert "grad_clip" not in Recipe("digits", **TINY).to_dict()
    task = engine.Task.make(clipped, KD("resnet"))
    fused = engine.train_many(archs[:4], 0, task)
    plain = [engine.train_plain(a, 0, task) for a in archs[:4]]
    diffs = [abs(f["test_acc"] - p["test_acc"]) for f, p in zip(fused, plain)]
    assert np.mean(diffs) <= 0.02 and max(diffs) <= 0.05, diffs
    free = engine.train_many(archs[:4], 0, engine.Task.make(Recipe("digits", **TINY), KD("resnet")))
    assert [f["train_loss"][-1] for f in fused] != [f["train_loss"][-1] for f in free]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_recipe_refuses_a_bad_grad_clip(bad):
    with pytest.raises(ValueError, match="grad_clip must be a finite number > 0 or null"):
        Recipe("digits", grad_clip=bad)


def test_none_teacher_has_no_teacher_metrics(archs):
    task = engine.Task.make(Recipe("digits", **TINY), KD("none"))
    rec = engine.train_many(archs[:2], 1, task)[0]
    assert rec["kd_alpha"] == 0.0 and rec["test_agreement"] is None and rec["seed"] == 1


def test_ece_of_perfect_confident_predictions_is_zero():
    probs = torch.eye(4)[None].repeat(1, 1, 1).permute(1, 0, 2)  # (4, 1, 4), one-hot
    assert engine.ece(probs, torch.arange(4)).item() == pytest.approx(0.0)
    probs = torch.full((4, 1, 4), 0.25)
    assert engine.ece(probs, torch.arange(4)).item() == pytest.approx(0.0)  # 25% confident, 25% right
    probs = torch.eye(4)[[1, 2, 3, 0]][:, None]
    assert engine.ece(probs, torch.arange(4)).item() == pytest.approx(1.0)


def test_kd_loss_is_zero_when_student_copies_teacher_and_alpha_is_one():
    t = torch.randn(8, 10)
    logits = t[:, None].repeat(1, 3, 1)
    loss, per = engine._loss(logits, torch.zeros(8, dtype=torch.long), t, KD("resnet", 4.0, 1.0))
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and per.shape == (3,)


def test_recipe_id_is_stable_and_sensitive():
    a, b = Recipe("digits", width=4), Recipe("digits", width=8)
    assert a.recipe_id == Recipe("digits", width=4).recipe_id != b.recipe_id
    with pytest.raises(ValueError, match="unknown recipe fields"):
        Recipe.from_dict({"dataset": "digits", "widht": 4})
    with pytest.raises(ValueError, match="alpha"):
        KD("resnet", 4.0, 1.5)


def test_shipped_recipes_keep_the_ids_their_tables_carry():
    """A field added to Recipe must not change the id of recipes that leave it unset."""
    from danas_bench.core.recipe import RECIPE_DIR, recipe_for

    manifest = json.loads((Path(__file__).parents[1] / "tables" / "MANIFEST").read_text())["files"]
    for dataset in ("digits", "mnist1d"):
        ids = {
            e["recipe_id"]
            for e in manifest.values()
            if e.get("kind") in ("table", "archs", "expected")
            and e.get("dataset", e.get("pair", "").split("/")[0]) == dataset
        }
        versions = {recipe_for(dataset).recipe_id} | {
            recipe_for(dataset, f.stem.split("-")[-1]).recipe_id for f in RECIPE_DIR.glob(f"{dataset}-v*.yaml")
        }
        assert recipe_for(dataset).recipe_id in ids and ids <= versions
    r = Recipe("digits", width=4)
    assert "valid_curve_n" not in r.to_dict() and r.replace(valid_curve_n=50).recipe_id != r.recipe_id
    with pytest.raises(ValueError, match="valid_curve_n must be a positive int"):
        Recipe("digits", valid_curve_n=0)


def test_every_shipped_recipe_file_loads():
    from danas_bench.commands import RECIPE_DIR, recipe_for
    from danas_bench.training.data import TIERS

    files = sorted(RECIPE_DIR.glob("*.yaml"))
    assert {f.stem for f in files} >= {"digits", "mnist1d", "fashion-mnist"}
    for f in files:
        dataset, _, version = f.stem.partition("-v")  # <dataset>.yaml, or <dataset>-v2.yaml (tables v2)
        if version:
            assert version.isdigit(), f"{f.name}: versioned recipes are named <dataset>-v<N>.yaml"
        r = recipe_for(dataset, f"v{version}" if version else None)
        assert r.dataset == dataset in TIERS
    # tier M's per-epoch valid curve on a prefix of its 5,000 valid images: 1,000 in v1, 500 in v2 (served)
    assert recipe_for("fashion-mnist", "v1").valid_curve_n == 1000
    assert recipe_for("fashion-mnist").valid_curve_n == recipe_for("fashion-mnist", "v2").valid_curve_n == 500


def test_valid_curve_uses_a_prefix_and_final_metrics_the_whole_split(archs):
    n = 7
    task = engine.Task.make(Recipe("digits", width=4, epochs=2, batch_size=64, n_train=64, valid_curve_n=n), KD("none"))
    rec = engine.train_many(archs[:2], 0, task)
    for r in rec:
        assert all(abs(v * n - round(v * n)) < 1e-4 for v in r["valid_acc_curve"])
        assert abs(r["valid_acc"] * 300 - round(r["valid_acc"] * 300)) < 1e-4  # digits has 300 valid examples


def test_forward_flops_reads_the_archs_file_and_agrees_with_counting():
    from danas_bench.commands import recipe_for

    recipe = recipe_for("digits", "v1")
    stored = engine._stored_flops(recipe)
    assert len(stored) == space.N_CANONICAL, "the shipped digits archs file lists every canonical architecture"
    for index in list(stored)[:: len(stored) // 4]:
        assert engine.forward_flops(index, recipe) == stored[index] == engine.count_flops(index, recipe)


def test_throughput_benchmark_times_both_sides_on_one_sample(tmp_path):
    """The benchmark's record: plain time = its three parts around the engine's two runs, engine time
    = their mean, rates and ratio consistent with the times, equivalence figures in [0, 1], the report
    written."""
    from danas_bench.reports import throughput

    res = throughput.bench_recipe(Recipe("digits", n_train=64, **TINY), "resnet", n=4, chunk=4, log=lambda *a: None)
    assert res["plain_seconds"] == pytest.approx(sum(res["plain_seconds_parts"]))
    assert res["plain_archs_parts"] == [2, 1, 1] and all(t > 0 for t in res["plain_seconds_parts"])
    assert res["engine_seconds"] == pytest.approx((res["engine_seconds_seed0"] + res["engine_seconds_seed1"]) / 2)
    assert res["plain_archs_per_core_hour"] == pytest.approx(3600 * 4 / res["plain_seconds"])
    assert res["speedup"] == pytest.approx(res["plain_seconds"] / res["engine_seconds"])
    for key in ("equiv_mean_abs_diff", "equiv_max_abs_diff", "seed_mean_abs_diff", "seed_max_abs_diff"):
        assert 0.0 <= res[key] <= 1.0
    assert res["equiv_mean_abs_diff"] <= res["equiv_max_abs_diff"]
    assert 0.0 < res["engine_share_of_limit"] < 1.0
    for key in ("plain_mean_test_acc", "engine_mean_test_acc", "engine_seed1_mean_test_acc"):
        assert 0.0 <= res[key] <= 1.0
    throughput.report([res], tmp_path / "t.md")
    assert f"**{res['speedup']:.2f}x**" in (tmp_path / "t.md").read_text()


def test_freed_activations_stay_in_the_heap():
    """After keep_freed_memory, freed multi-megabyte temporaries are reused by the next ones instead of
    being unmapped (or trimmed off the heap) and page-faulted in again, glibc's default."""
    import resource
    import sys

    if not sys.platform.startswith("linux") or not engine.keep_freed_memory():
        pytest.skip("needs glibc's mallopt")

    def step():  # temporaries of a few sizes (16 and 8 MB), like a fused training step's
        a, b = torch.ones(1 << 22), torch.zeros(1 << 21)
        return (a[: 1 << 21] + b).sum()

    for _ in range(10):  # the heap grows to hold them once
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # measured in fresh processes: 0 faults with the setting, ~408,000 without (8,000 per step)
    assert faults < 4096, faults


def test_engine_optimizer_updates_exactly_like_the_plain_loops():
    """The engine's fused SGD and the plain loop's default SGD move parameters alike: to the bit on
    each tensor's first multiple of 8 elements, to the last bit on the rest."""
    torch.manual_seed(0)
    r = Recipe("digits", **TINY)
    # 6 channels: sizes 72, 6, 6 with tails past a multiple of 8, where the fused kernel rounds its own way
    models = [torch.nn.Sequential(torch.nn.Conv1d(4, 6, 3), torch.nn.BatchNorm1d(6)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [engine.optimizer(models[0], r), engine.optimizer(models[1], r, fused=True)]
    assert opts[1].defaults["fused"] and not opts[0].defaults["fused"]
    x = torch.randn(16, 4, 10)
    for _ in range(3):
        for m, opt in zip(models, opts):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        n8 = a.numel() // 8 * 8  # vectorised part: to the bit; the tail: to the last bit
        torch.testing.assert_close(a.flatten()[:n8], b.flatten()[:n8], atol=0, rtol=0)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_pool_constants_first_made_in_evaluation_still_serve_training():
    """The pool's cached constants are ordinary tensors even when evaluation (inference mode) asks for
    them first: a later training step can save them for its backward."""
    shapes = [((1, 2, 3, 13), 1), ((1, 2, 3, 5, 7), 2), ((1, 2, 3, 14, 15), 2)]  # conv, matmul, separable
    with torch.inference_mode():
        for shape, ndim in shapes:
            avg_pool_same(torch.randn(shape), ndim)
    for shape, ndim in shapes:
        x = torch.randn(shape, requires_grad=True)
        avg_pool_same(x, ndim).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_fused_batch_norm_refuses_students_it_cannot_represent():
    from danas_bench.training.fused_ops import _cat_bn

    ok = torch.nn.BatchNorm1d(4)
    for bad in (
        torch.nn.BatchNorm1d(4, momentum=None),
        torch.nn.BatchNorm1d(4, affine=False),
        torch.nn.BatchNorm1d(4, eps=1e-3),
        torch.nn.BatchNorm1d(4, track_running_stats=False),
    ):
        with pytest.raises(ValueError, match="share eps"):
            _cat_bn([ok, bad])
    assert _cat_bn([ok, torch.nn.BatchNorm1d(2)]).num_features == 6
    with pytest.raises(ValueError, match="more than 1 value"):
        TallBatchNorm(3)(torch.randn(1, 3, 1, 1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_pool_workers_die_with_a_killed_parent(tmp_path):
    """A recipe search killed mid-task must not leave its workers training on (they were seen at 43% of a
    core each for minutes after their parent's timeout)."""
    script = (
        "import os, sys, time\n"
        "from danas_bench.training.workers import pool\n"
        "ex = pool(1)\n"
        "print(ex.submit(os.getpid).result(), flush=True)\n"
        "ex.submit(time.sleep, 600)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())

    def alive() -> bool:  # a dead worker may linger as a zombie until something reaps it
        try:
            return Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    assert alive()
    parent.kill()
    parent.wait()
    for _ in range(300):  # a liveness poll, not a speed bound: the signal arrives at once
        if not alive():
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"worker {worker} outlived its killed parent")
