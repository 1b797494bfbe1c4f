r"""The fast paths of the monotonic inverses (NAF's MNN, BPF's Bernstein polynomials).

* MNN: the inverse iterates on an in-place evaluation (``MonotonicTransform.iterate``) and a
  group of one feature runs plain GEMMs; both must give the differentiable path's values,
  whose derivative must equal autograd's, under ``vmap`` too and without functorch's slow
  fallback (a warning).
* NAF at its default iterations: round trip <= 1e-4 on N(0, I), a [-5, 5] grid and far tails;
  gradients of samples are the implicit ones; ``torch.compile(backend="aot_eager")`` agrees;
  the default MNN inverse (8 iterations, search scale 100) equals a 60-iteration one for
  steep networks and roots out to |x| = 300.
* Bernstein: the slope from one basis equals autograd's derivative of the value, and the
  control-polygon initial guess lies in the right segment and inverts exactly.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.func import grad, jacrev, vmap

from lazydist_functional.catalogue import make_spec
from lazydist_functional.flows import MNN, NAF
from lazydist_functional.nn.monotonic import fold_signs, folded_value_and_tangent, folded_value_and_tangent_inplace
from lazydist_functional.transforms import BernsteinTransform, BoundedBernsteinTransform, MonotonicTransform
from lazydist_functional.transforms.monotonic.bernstein import _poly_planes, _poly_unrolled


def _mnn(stack: int, seed: int = 0):
    m = MNN(signal=4, stack=stack, hidden_features=[8, 8])
    params = m.init(torch.Generator().manual_seed(seed))
    signal = torch.randn(5, stack, 4, generator=torch.Generator().manual_seed(seed + 1))
    return m, params, signal


@pytest.mark.parametrize("stack", [1, 3])
def test_mnn_iterate_equals_the_differentiable_path_and_autograd(stack):
    m, params, signal = _mnn(stack)
    t = m.transform(params, signal)
    x = 3 * torch.randn(5, stack)
    y, dy = t.f_and_df(x)
    y_it, dy_it = t.iterate(x.clone())
    torch.testing.assert_close(y_it, y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dy_it, dy, rtol=1e-6, atol=1e-6)
    # The network called as a plain module (Zuko's two-way ELU): same value, autograd slope.
    torch.testing.assert_close(m.network_f(params["network"], signal, x), y, rtol=1e-5, atol=1e-6)
    # Element-wise in x: forward-mode AD with unit tangents gives every f'(x_i).
    _, slope = torch.func.jvp(lambda v: m.network_f(params["network"], signal, v), (x,), (torch.ones_like(x),))
    torch.testing.assert_close(slope, dy, rtol=1e-5, atol=1e-6)


def test_one_network_path_equals_the_stacked_contraction():
    m, params, signal = _mnn(1)
    net = params["network"]
    names = m.network.names
    W0, b0, Ws, bs = fold_signs(net[names[0]]["weight"], net[names[0]]["bias"],
                                [net[n]["weight"] for n in names[1:]], [net[n]["bias"] for n in names[1:]])
    v = torch.randn(7, 1, 8)
    # Two copies of the network stacked (the einsum path) against one (the GEMM path).
    two = ([torch.cat((W, W)) for W in Ws], [torch.cat((b, b)) for b in bs])
    y1, d1 = folded_value_and_tangent(v, W0[..., 0], Ws, bs)
    y2, d2 = folded_value_and_tangent(v.expand(7, 2, 8), torch.cat((W0[..., 0], W0[..., 0])), *two)
    torch.testing.assert_close(y2, torch.cat((y1, y1), dim=-2))
    torch.testing.assert_close(d2, torch.cat((d1, d1), dim=-2))
    y3, d3 = folded_value_and_tangent_inplace(v.clone(), W0[..., 0], Ws, bs)
    torch.testing.assert_close((y3, d3), (y1, d1))


def test_mnn_inverse_under_vmap_without_fallback():
    m, params, signal = _mnn(2)
    x = torch.randn(4, 5, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # functorch warns when an op has no batching rule
        y = vmap(lambda v: m.transform(params, signal).f_and_df(v)[0])(x)
        back = vmap(lambda u: m.transform(params, signal).inv(u))(y)
        # Parameters batched too (a vmapped ensemble of networks).
        P = {"network": {k: {n: torch.stack((w, 1.1 * w)) for n, w in layer.items()}
                         for k, layer in params["network"].items()}}
        yp = vmap(lambda p: m.transform(p, signal).f_and_df(x[0])[0])(P)
        backp = vmap(lambda p, u: m.transform(p, signal).inv(u))(P, yp)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)
    torch.testing.assert_close(backp, x[0].expand(2, 5, 2), atol=1e-4, rtol=0)


def test_naf_default_round_trip_and_implicit_gradients():
    spec = NAF(3, transforms=3)
    params = spec.init(torch.Generator().manual_seed(0))
    t = spec.apply(params).transform
    g = torch.Generator().manual_seed(2)
    sets = (
        torch.randn(512, 3, generator=g),
        torch.linspace(-5, 5, 101)[:, None].expand(101, 3),
        torch.tensor([[-9.0, 9.0, 0.0], [9.0, -9.0, 7.0], [8.0, 8.0, 8.0]]),
    )
    with torch.no_grad():
        for x in sets:
            assert float((t.inv(t(x)) - x).abs().max()) <= 1e-4
    # d x / d z of a sample is the inverse of the forward Jacobian at the sample.
    z = torch.randn(3, generator=g)
    x = t.inv(z)
    J_inv = jacrev(t.inv)(z)
    torch.testing.assert_close(J_inv @ jacrev(t)(x), torch.eye(3), atol=1e-4, rtol=0)
    # Gradients w.r.t. the parameters flow (implicit step) and are finite.
    gp = grad(lambda p: spec.apply(p).transform.inv(z).sum())(params)
    leaves = torch.utils._pytree.tree_leaves(gp)
    assert all(bool(torch.isfinite(v).all()) for v in leaves)
    assert any(float(v.abs().max()) > 0 for v in leaves)


def test_naf_sampling_compiles():
    spec = make_spec("NAF", features=2)
    params = spec.init(torch.Generator().manual_seed(0))
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    f = lambda p, u: spec.apply(p).transform.inv(u)  # noqa: E731
    # Compiled, a one-unit layer is a product and a sum rather than a GEMM (``unit_output_linear``):
    # the same values to float32 rounding, which the root finder carries (2e-6 relative seen).
    torch.testing.assert_close(torch.compile(f, backend="aot_eager", fullgraph=True)(params, z), f(params, z),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [BernsteinTransform, BoundedBernsteinTransform])
def test_bernstein_slope_and_polygon_guess(cls):
    g = torch.Generator().manual_seed(0)
    t = cls(3 * torch.randn(4, 12, generator=g))
    B = t.bound
    x = torch.cat((torch.tensor([-B - 2.0]), torch.linspace(-B + 1e-3, B - 1e-3, 50), torch.tensor([B + 3.0])))
    x = x[:, None].repeat(1, 4)
    y, dy = t.value_and_derivative(x)
    _, auto = torch.func.jvp(lambda v: t.value_and_derivative(v)[0], (x,), (torch.ones_like(x),))
    torch.testing.assert_close(dy, auto, rtol=1e-4, atol=1e-5)
    # The guess lies within [-B, B] and is monotone in y; Newton from it inverts to round-off.
    guess = t._initial_guess(y)
    assert bool((guess >= -B).all() and (guess <= B).all())
    assert bool((guess[1:] >= guess[:-1]).all())
    torch.testing.assert_close(t.inv(y), x, atol=1e-4, rtol=0)


def test_polygon_guess_with_flat_coefficients_is_finite():
    # Softmax increments that underflow give equal coefficients (hi == lo): no 0 / 0.
    t = BoundedBernsteinTransform(torch.tensor([[0.0, 200.0, 200.0, -200.0, 0.0]]))
    y = torch.linspace(-4, 4, 9)[:, None]
    assert bool(torch.isfinite(t._initial_guess(y)).all())
    torch.testing.assert_close(t(t.inv(y)), y, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_mnn_default_inverse_converges_for_steep_networks_and_far_roots(scale):
    # The defaults (8 iterations from a search scale of 100) against 60 iterations:
    # networks with 10x weights, roots from 0 out to |x| = 300.
    m = MNN(signal=4, stack=1, hidden_features=[16, 16])
    p = m.init(torch.Generator().manual_seed(3))
    p = {"network": {k: {n: w * scale if n == "weight" else w for n, w in layer.items()}
                     for k, layer in p["network"].items()}}
    g = torch.Generator().manual_seed(4)
    t = m.transform(p, torch.randn(256, 1, 4, generator=g))
    x = torch.cat((30 * torch.randn(128, 1, generator=g), torch.linspace(-300, 300, 128)[:, None]))
    with torch.no_grad():
        y = t(x)
        reference = MonotonicTransform(t.f, f_and_df=t.f_and_df, bound=t.bound, iterations=60).inv(y)
        torch.testing.assert_close(t.inv(y), reference, atol=1e-4, rtol=1e-4)
    assert t.iterations == 8 and t.bound == 100.0


def test_bernstein_one_basis_matches_the_definition_and_zuko_lines_beyond_the_bounds():
    # value = sum_i b_i,M theta_i and slope = d/dt, from the degree M - 1 basis (planes and
    # unrolled), broadcasting coefficients (3, M + 1) against t (7, 3); float64.
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 9, generator=g, dtype=torch.float64).cumsum(-1)
    t = torch.rand(7, 3, generator=g, dtype=torch.float64)
    M = theta.shape[-1] - 1
    k = torch.arange(M + 1, dtype=torch.float64)
    binom = torch.tensor([float(math.comb(M, i)) for i in range(M + 1)], dtype=torch.float64)
    value = lambda s: (binom * s[..., None] ** k * (1 - s[..., None]) ** (M - k) * theta).sum(-1)  # noqa: E731
    _, slope = torch.func.jvp(value, (t,), (torch.ones_like(t),))
    for got in (_poly_planes(t, theta), _poly_unrolled(t, theta.unbind(-1))):
        torch.testing.assert_close(got[0], value(t))
        torch.testing.assert_close(got[1], slope)
    # Beyond [-B, B] the bounded transform is Zuko's lines x -/+ 2 B eps, with log-det 0.
    tr = BoundedBernsteinTransform(torch.randn(4, 12, generator=g, dtype=torch.float64))
    x = torch.tensor([-9.0, -5.5, 5.5, 12.0], dtype=torch.float64)
    y, ladj = tr.call_and_ladj(x)
    torch.testing.assert_close(y, x + torch.sign(x) * 2 * tr.bound * tr.eps, atol=1e-9, rtol=0)
    torch.testing.assert_close(ladj, torch.zeros_like(ladj), atol=1e-9, rtol=0)


@pytest.mark.parametrize("cls", [BernsteinTransform, BoundedBernsteinTransform])
def test_bernstein_under_vmap_runs_on_physical_tensors_like_a_loop(cls):
    # Parameter sets and/or inputs batched (any in_dims): values, gradients, vmap(grad), jacrev.
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 4, 2, 9, generator=g, dtype=torch.float64)
    x = 4 * torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    f = lambda a, b: cls(a).call_and_ladj(b)  # noqa: E731
    cases = (((0, 0), (u, x)), ((0, None), (u, x[0])), ((None, 0), (u[0], x)), ((2, 1), (u.movedim(0, 2), x.movedim(0, 1))))
    for (da, db), (a, b) in cases:
        got = vmap(f, in_dims=(da, db))(a, b)
        rows = [f(a if da is None else a.select(da, i), b if db is None else b.select(db, i)) for i in range(3)]
        for k in range(2):
            torch.testing.assert_close(got[k], torch.stack([r[k] for r in rows]))
    loss = lambda a, b: f(a, b)[1].sum() + f(a, b)[0].sin().sum()  # noqa: E731
    looped = torch.stack([grad(loss)(u[i], x[i]) for i in range(3)])
    torch.testing.assert_close(grad(lambda a: vmap(loss)(a, x).sum())(u), looped)
    torch.testing.assert_close(vmap(grad(loss))(u, x), looped)
    jac = vmap(jacrev(lambda a, b: f(a, b)[0]))(u, x)
    torch.testing.assert_close(jac, torch.stack([jacrev(lambda a: f(a, x[i])[0])(u[i]) for i in range(3)]))
