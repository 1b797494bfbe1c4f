r"""The closed-form rotation exponential, the Bernstein inverse on its proven bracket and
the GF inverse without a table (issue 15's sampling speed paths): values against
references, gradients, vmap and compile."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, jacrev, vmap

from lazydist_functional.transforms import BernsteinTransform, BoundedBernsteinTransform, GaussianizationTransform
from lazydist_functional.transforms.monotonic.bernstein_inverse import solve_unit
from lazydist_functional.transforms.monotonic.gaussianization_inverse import _flatten, component_bracket
from lazydist_functional.transforms.rotation import RotationTransform, skew_exp


def _skew(D: int, scale: float, dtype: torch.dtype, seed: int = 0, batch: tuple[int, ...] = (16,)) -> torch.Tensor:
    A = torch.randn(*batch, D, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    return (A - A.mT).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("D", [1, 2, 3, 4])
@pytest.mark.parametrize("scale", [0.0, 1e-20, 1e-4, 0.3, 3.0, 100.0])
def test_skew_exp_equals_matrix_exp_to_rounding(dtype, D, scale):
    S = _skew(D, scale, dtype)
    exact = torch.linalg.matrix_exp(S.double())  # the float64 exponential of the same input
    eps = torch.finfo(dtype).eps
    # rounding of theta itself moves sin/cos by ~ theta eps: the bound any float method has
    theta = float(S.double().square().sum((-2, -1)).mul(0.5).sqrt().max())
    err = float((skew_exp(S).double() - exact).abs().max())
    assert err <= 16 * eps * (1 + theta)
    assert skew_exp(S).dtype == dtype


def test_skew_exp_is_orthogonal_and_half_precision_goes_through_float32():
    S = _skew(3, 2.0, torch.float32)
    R = skew_exp(S)
    torch.testing.assert_close(R @ R.mT, torch.eye(3).expand_as(R), atol=1e-6, rtol=0)
    assert skew_exp(S.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("scale", [0.0, 1e-3, 1.0, 10.0])
def test_skew_exp_gradients_equal_matrix_exps(scale):
    A = torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * scale
    W = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def ours(a):
        return (skew_exp(a - a.T) * W).sum()

    def ref(a):
        return (torch.linalg.matrix_exp(a - a.T) * W).sum()

    g = grad(ours)(A)
    assert bool(torch.isfinite(g).all())
    torch.testing.assert_close(g, grad(ref)(A), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(jacrev(lambda a: skew_exp(a - a.T))(A),
                               jacrev(lambda a: torch.linalg.matrix_exp(a - a.T))(A), atol=1e-10, rtol=1e-8)


def test_rotation_under_vmap_and_compile():
    A = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(3))
    x = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(4))
    mapped = vmap(lambda a, v: RotationTransform(a)(v))(A, x)
    looped = torch.stack([RotationTransform(A[i])(x[i]) for i in range(5)])
    torch.testing.assert_close(mapped, looped)
    expected = torch.einsum("bij,bnj->bni", torch.linalg.matrix_exp(A - A.mT), x)
    torch.testing.assert_close(mapped, expected, atol=1e-5, rtol=0)
    compiled = torch.compile(lambda a, v: RotationTransform(a).inv(v), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(A[0], mapped[0]), x[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [BernsteinTransform, BoundedBernsteinTransform])
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_bernstein_unit_solver_keeps_the_root_bracketed(cls, scale):
    t = cls(scale * torch.randn(256, 17, generator=torch.Generator().manual_seed(5)))
    x = torch.rand(256, generator=torch.Generator().manual_seed(6)) * 8 - 4
    with torch.no_grad():
        y = t(x)
        for iterations in (0, 2, 5):  # every iterate stays in [eps, 1 - eps]
            u = solve_unit(y, t.theta, t._polygon(y), t.eps, iterations)
            assert bool(((u >= t.eps) & (u <= 1 - t.eps)).all())
        root = t.inv(y)
    # converged where f is not flat (f' > 1e-3): the inverse maps back to the targets
    _, slope = t.value_and_derivative(x)
    steep = slope > 1e-3
    torch.testing.assert_close(t(root), y, atol=2e-5, rtol=0)
    torch.testing.assert_close(root[steep], x[steep], atol=5e-3, rtol=0)


def test_bernstein_inverse_broadcasts_and_has_implicit_gradients():
    theta = torch.randn(3, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y = torch.linspace(-6, 6, 15, dtype=torch.float64)[:, None].expand(15, 3)

    def inverse(th, v):
        return BoundedBernsteinTransform(th).inv(v)

    x = inverse(theta, y)
    assert x.shape == (15, 3)
    torch.testing.assert_close(BoundedBernsteinTransform(theta)(x), y, atol=1e-9, rtol=0)
    # d x / d y = 1 / f'(x); d x / d theta = -(d f / d theta) / f'(x)
    dx = vmap(grad(lambda v, th: inverse(th, v)), in_dims=(0, None))(y[:, 0], theta[0])
    _, slope = BoundedBernsteinTransform(theta[0]).value_and_derivative(x[:, 0])
    torch.testing.assert_close(dx, 1 / slope, atol=1e-8, rtol=1e-6)
    jt = jacrev(lambda th: inverse(th, y[4, 0]))(theta[0])
    jf = jacrev(lambda th: BoundedBernsteinTransform(th)(x[4, 0]))(theta[0])
    torch.testing.assert_close(jt, -jf / slope[4], atol=1e-8, rtol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(inverse(theta, y), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("clip", [1e-6, 0.0])
def test_component_bracket_is_proven(clip):
    g = torch.Generator().manual_seed(8)
    shift, log_scale = torch.randn(512, 8, generator=g), 1.5 * torch.randn(512, 8, generator=g)
    x = 3 * torch.randn(512, generator=g, dtype=torch.float32)
    t = GaussianizationTransform(shift, log_scale, clip=clip)
    with torch.no_grad():
        y = t(x)
        ok = y.abs() < 4.5  # inside the clipped image
        yy, b, a, _ = _flatten(y, shift, log_scale)
        guess, lo, hi = component_bracket(yy, b, a, clip)
    lo, hi, guess = lo[:, 0], hi[:, 0], guess[:, 0]
    tol = 1e-5 * (1 + x.abs())
    assert bool(((x >= lo - tol) & (x <= hi + tol))[ok].all())
    assert bool(((guess >= lo) & (guess <= hi)).all())


@pytest.mark.parametrize("clip", [1e-6, 0.0])
def test_untabulated_inverse_converges_for_wide_parameters_the_same_with_and_without_grad(clip):
    # components of very different scales (Newton alone bounces across a kink of the tail
    # mass): the half-bracket rule still converges within the default iterations
    g = torch.Generator().manual_seed(9)
    shift, log_scale = 2 * torch.randn(1024, 8, generator=g), 2 * torch.randn(1024, 8, generator=g)
    t = GaussianizationTransform(shift, log_scale, clip=clip, nodes=0, iterations=16)
    x = 3 * torch.randn(1024, generator=g)
    y = t(x).detach()
    with torch.no_grad():
        plain = t.inv(y)
    with_grad = t.inv(y)
    assert torch.equal(plain, with_grad.detach())
    with torch.no_grad():
        assert float((t(plain) - y).abs().max()) < 1e-3


def test_untabulated_inverse_gradients_are_implicit():
    g = torch.Generator().manual_seed(10)
    shift, log_scale = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.randn(4, 8, generator=g,
                                                                                      dtype=torch.float64)
    y = torch.tensor([-2.0, -0.3, 0.7, 2.5], dtype=torch.float64)

    def inverse(v, b):
        return GaussianizationTransform(b, log_scale, nodes=0).inv(v)

    x = inverse(y, shift)
    _, slope = GaussianizationTransform(shift, log_scale).value_and_derivative(x)
    torch.testing.assert_close(jacrev(inverse)(y, shift).diagonal(), 1 / slope, atol=1e-8, rtol=1e-6)
    jb = jacrev(inverse, argnums=1)(y, shift)
    jf = jacrev(lambda b: GaussianizationTransform(b, log_scale)(x), argnums=0)(shift)
    torch.testing.assert_close(jb, -jf / slope[:, None, None], atol=1e-8, rtol=1e-6)
