r"""``adapters.utils``: Zuko's helper names, compared with Zuko and under torch.func."""

from __future__ import annotations

import warnings

import torch
import zuko.utils as ZU
from torch.func import grad, vmap

import lazydist_functional.adapters as Z


def test_bisection_matches_zuko_with_implicit_gradients_and_vmaps():
    f = lambda x: x**3 + x  # noqa: E731
    y = torch.tensor([2.0, 10.0, -3.0], requires_grad=True)
    ours, ref = Z.utils.bisection(f, y, -5.0, 5.0, n=40), ZU.bisection(f, y, -5.0, 5.0, n=40)
    assert torch.allclose(ours, ref, atol=1e-5)
    g_ours, = torch.autograd.grad(ours.sum(), y)
    g_ref, = torch.autograd.grad(ref.sum(), y)
    assert torch.allclose(g_ours, g_ref, atol=1e-5)
    assert torch.allclose(g_ours, 1 / (3 * ours.detach() ** 2 + 1), atol=1e-5)
    # Zuko's bisection is an autograd.Function without a vmap rule; this one vmaps and grads
    g = vmap(grad(lambda yi: Z.utils.bisection(f, yi, -5.0, 5.0, n=40)))(y.detach())
    assert torch.allclose(g, g_ref, atol=1e-5)


def test_gauss_legendre_odeint_broadcast_unpack_partial():
    a, b = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0])
    assert torch.allclose(Z.utils.gauss_legendre(torch.exp, a, b, n=5), ZU.gauss_legendre(torch.exp, a, b, n=5))
    assert torch.allclose(Z.utils.gauss_legendre(torch.exp, a, b, n=5), b.exp() - a.exp(), atol=1e-5)
    x0 = torch.tensor([1.0, 2.0])
    assert torch.allclose(Z.utils.odeint(lambda t, x: -x, x0, 0.0, 1.0), x0 * torch.exp(torch.tensor(-1.0)), atol=1e-5)
    x, y = Z.utils.broadcast(torch.rand(3, 1, 2), torch.rand(4, 5), ignore=1)
    assert x.shape == (3, 4, 2) and y.shape == (3, 4, 5)
    parts = Z.utils.unpack(torch.arange(26.0), ((1, 2, 3), (4, 5)))
    ref = ZU.unpack(torch.arange(26.0), ((1, 2, 3), (4, 5)))
    assert all(torch.equal(p, r) for p, r in zip(parts, ref))
    inc = Z.utils.Partial(torch.add, torch.tensor(1.0), buffer=True)
    assert torch.equal(inc(torch.arange(3)), torch.tensor([1.0, 2.0, 3.0]))
    assert sorted(inc.state_dict()) == sorted(ZU.Partial(torch.add, torch.tensor(1.0), buffer=True).state_dict())


def test_deprecated_unconditional_still_builds():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = Z.lazy.Unconditional(Z.transforms.MonotonicAffineTransform, torch.tensor(1.0), torch.tensor(0.0))
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert torch.allclose(t()(torch.tensor(2.0)), torch.tensor(3.0))


def test_bisection_gives_zukos_values_for_every_n_and_phi_gradients():
    # Zuko's n halvings (the midpoint of the last bracket), increasing or decreasing brackets;
    # gradients w.r.t. what f closes over by the implicit function theorem, as Zuko's backward
    w = torch.tensor(1.5, requires_grad=True)
    f = lambda x: w * x**3 + x  # noqa: E731
    y = torch.linspace(-4.0, 4.0, 9)
    for n in (1, 2, 8, 16):
        ours, ref = Z.utils.bisection(f, y, -3.0, 3.0, n=n), ZU.bisection(f, y, -3.0, 3.0, n=n, phi=(w,))
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
        (g_ours,), (g_ref,) = torch.autograd.grad(ours.sum(), w), torch.autograd.grad(ref.sum(), w)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)
    dec = lambda x: -f(x)  # noqa: E731
    torch.testing.assert_close(Z.utils.bisection(dec, y, 3.0, -3.0, n=5), ZU.bisection(dec, y, 3.0, -3.0, n=5, phi=(w,)))
