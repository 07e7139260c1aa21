"""The C kernels equal torch's convolutions, refuse what they cannot run, and the engine falls back
to torch where they cannot be built."""

import os

import pytest
import torch
import torch.nn.functional as F

from danas_bench.training import native

needs_kernels = pytest.mark.skipif(not native.available(), reason="no C compiler: the engine uses torch's conv2d")


def _reference(x, w, bias, groups, grad):
    x, w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = F.conv2d(x, w, bias, 1, (0, 1), 1, groups)
    gx, gw = torch.autograd.grad(y, (x, w), grad)
    return y.detach(), gx, gw


@needs_kernels
@pytest.mark.parametrize(
    "groups,c_in,c_out,b,length",
    [
        (48, 4, 4, 64, 40),
        (64, 8, 8, 64, 20),
        (64, 16, 16, 64, 10),  # the width-4 students' stages
        (3, 4, 4, 5, 7),
        (2, 3, 5, 3, 1),
        (1, 1, 12, 2, 2),
        (5, 16, 20, 1, 17),
        (4, 2, 1, 9, 3),  # edges, odd sizes
    ],
)
def test_conv3_equals_torch_forward_and_both_gradients(groups, c_in, c_out, b, length):
    torch.manual_seed(0)
    x = torch.randn(1, groups * c_in, b, length)
    w = torch.randn(groups * c_out, c_in, 1, 3)
    bias = torch.randn(groups * c_out)
    grad = torch.randn(1, groups * c_out, b, length)
    y_ref, gx_ref, gw_ref = _reference(x, w, bias, groups, grad)
    torch.testing.assert_close(native.conv3(x, w, bias, groups), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(native.conv3(x, w, None, groups), y_ref - bias.view(1, -1, 1, 1), rtol=1e-5, atol=1e-5)
    gx, gw = native.conv3_backward(grad, x, w, groups)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-4)


@needs_kernels
def test_conv3_keeps_rows_apart():
    """No tap reaches into the neighbouring row (sample) of the tall layout: a single non-zero input
    at a row's end moves only its own row's output."""
    x = torch.zeros(1, 1, 3, 5)
    x[0, 0, 1, -1] = 1.0
    y = native.conv3(x, torch.ones(1, 1, 1, 3), None, 1)
    assert y[0, 0, 0].abs().sum() == 0 and y[0, 0, 2].abs().sum() == 0
    assert y[0, 0, 1].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


@needs_kernels
def test_a_non_finite_sample_stays_in_its_row():
    """An inf at one sample's row end reaches none of its neighbours (padding reads 0, it does not
    multiply the neighbour's value by 0), in the forward and in both gradients."""
    x = torch.randn(1, 2, 3, 5)
    x[0, :, 1, -1] = float("inf")
    y = native.conv3(x, torch.randn(2, 2, 1, 3), None, 1)
    assert torch.isfinite(y[0, :, 0]).all() and torch.isfinite(y[0, :, 2]).all()
    grad = torch.randn(1, 2, 3, 5)
    grad[0, :, 1, 0] = float("inf")
    gx, _ = native.conv3_backward(grad, torch.randn(1, 2, 3, 5), torch.randn(2, 2, 1, 3), 1)
    assert torch.isfinite(gx[0, :, 0]).all() and torch.isfinite(gx[0, :, 2]).all()


@needs_kernels
def test_conv3_refuses_what_it_cannot_run():
    """Each refusal names what was wrong: the dtype, the weight, the layout, the device."""
    with pytest.raises(ValueError, match=r"got \(1, 4, 2, 5\) torch.float64"):
        native.conv3(torch.randn(1, 4, 2, 5, dtype=torch.float64), torch.randn(4, 4, 1, 3), None, 1)
    with pytest.raises(ValueError, match=r"and \(4, 4, 1, 5\) torch.float32"):
        native.conv3(torch.randn(1, 4, 2, 5), torch.randn(4, 4, 1, 5), None, 1)
    with pytest.raises(ValueError, match=r"got \(2, 4, 2, 5\)"):
        native.conv3(torch.randn(2, 4, 2, 5), torch.randn(4, 4, 1, 3), None, 1)
    with pytest.raises(ValueError, match=r"got \(1, 4, 2, 5, 5\)"):  # 2-D activations are torch's
        native.conv3(torch.randn(1, 4, 2, 5, 5), torch.randn(4, 4, 1, 3, 3), None, 1)
    with pytest.raises(ValueError, match="not differentiable"):
        native.conv3(torch.randn(1, 4, 2, 5, requires_grad=True), torch.randn(4, 4, 1, 3), None, 1)
    with pytest.raises(ValueError, match="CPU tensors"):
        native.conv3(torch.randn(1, 4, 2, 5, device="meta"), torch.randn(4, 4, 1, 3), None, 1)


def test_unbuildable_kernels_fall_back_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("DANAS_NATIVE", raising=False)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("DANAS_NATIVE_CACHE", str(tmp_path / "cache"))
    native._lib.cache_clear()
    try:
        with pytest.warns(UserWarning, match="C kernels unavailable"):
            assert not native.available()
    finally:
        monkeypatch.undo()
        native._lib.cache_clear()


def test_disabled_kernels_are_not_built(monkeypatch, tmp_path):
    monkeypatch.setenv("DANAS_NATIVE", "0")
    monkeypatch.setenv("DANAS_NATIVE_CACHE", str(tmp_path / "cache"))
    native._lib.cache_clear()
    try:
        assert not native.available() and not (tmp_path / "cache").exists()
    finally:
        monkeypatch.undo()
        native._lib.cache_clear()


@needs_kernels
def test_conv3_refuses_mismatched_shapes():
    """Shapes the C loops would read past: refused before any memory is touched."""
    x, w = torch.randn(1, 8, 2, 5), torch.randn(8, 4, 1, 3)
    with pytest.raises(ValueError, match="G=3 groups"):
        native.conv3(x, w, None, 3)
    with pytest.raises(ValueError, match="3-tap weight"):
        native.conv3(x, torch.randn(8, 2, 1, 3), None, 2)
    with pytest.raises(ValueError, match="bias has 7 values"):
        native.conv3(x, w, torch.randn(7), 2)
    with pytest.raises(ValueError, match="gradient of shape"):
        native.conv3_backward(torch.randn(1, 8, 2, 4), x, w, 2)


def test_kernels_build_where_required():
    """CI (``.ci/run`` sets DANAS_REQUIRE_NATIVE=1, after installing a compiler) must not pass by
    silently falling back to torch's convolutions, which would skip the kernel tests above."""
    if os.environ.get("DANAS_REQUIRE_NATIVE") != "1":
        pytest.skip("only where DANAS_REQUIRE_NATIVE=1 (CI)")
    assert native.available()
