r"""Planar and radial flows (Rezende & Mohamed, 2015): exact inverses, log-determinants
against ``jacrev``, the invertibility constraints, ``vmap``, ``compile``, the adapter."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, vmap

from lazydist_functional import flows, init_stacked, tree_unstack
from lazydist_functional.adapters import flows as zflows
from lazydist_functional.pytree import flatten_names
from lazydist_functional.transforms import PlanarTransform, RadialTransform
from lazydist_functional.transforms.planar import planar_u_hat

NAMES = ["Planar", "Radial"]
TOL = {torch.float64: 1e-5, torch.float32: 1e-4}


def _flow(name, context, dtype, seed=0, **kwargs):
    spec = getattr(flows, name)(3, context, transforms=4, hidden_features=[16], init_scale=1.0, **kwargs)
    params = spec.init(torch.Generator().manual_seed(seed), dtype=dtype)
    c = torch.randn(64, context, dtype=dtype, generator=torch.Generator().manual_seed(1)) if context else None
    return spec, params, c


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_sampling(name, context, dtype):
    spec, params, c = _flow(name, context, dtype)
    d = spec.apply(params, c)
    x = 2 * torch.randn(64, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    z = d.transform(x)
    assert (d.transform.inv(z) - x).abs().max() <= TOL[dtype]
    y, log_p = d.rsample_and_log_prob((5,))
    torch.testing.assert_close(log_p, d.log_prob(y), atol=TOL[dtype], rtol=TOL[dtype])
    assert d.sample((5,)).shape == ((5, 64, 3) if context else (5, 3))


def _jacobian_check(t, x):
    y, ladj = t.call_and_ladj(x)
    J = vmap(jacrev(t._call))(x)
    torch.testing.assert_close(ladj, torch.linalg.slogdet(J)[1], atol=1e-10, rtol=1e-8)
    x_back, ladj_inv = t.inverse_and_ladj(y)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    J_inv = vmap(jacrev(t.inv._call))(y)  # the root finder's implicit derivative
    torch.testing.assert_close(ladj_inv, torch.linalg.slogdet(J_inv)[1], atol=1e-8, rtol=1e-8)


def test_planar_log_det_matches_jacrev():
    g = torch.Generator().manual_seed(0)
    w, u, b = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64), \
        torch.randn((), generator=g, dtype=torch.float64)
    _jacobian_check(PlanarTransform(w, u, b), torch.randn(20, 4, generator=g, dtype=torch.float64))


def test_radial_log_det_matches_jacrev():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(4, generator=g, dtype=torch.float64)
    for beta in (-3.0, 0.0, 2.0):
        t = RadialTransform(z0, torch.tensor(0.3, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64))
        _jacobian_check(t, z0 + torch.randn(20, 4, generator=g, dtype=torch.float64))


def test_planar_constraint_holds_for_adversarial_parameters():
    w = torch.tensor([[1.0, 0.0], [3.0, -4.0], [1e-3, 1e-3], [0.0, 0.0]], dtype=torch.float64)
    u = torch.tensor([[-50.0, 3.0], [-30.0, 40.0], [-1e3, -1e3], [5.0, 5.0]], dtype=torch.float64)
    wu = (w * planar_u_hat(w, u)).sum(-1)
    assert (wu >= -1).all()
    assert (wu[:2] <= -1 + 1e-10).all()  # the raw w.u is very negative: w.û is pushed to -1, never below
    # Moderately adversarial: still invertible, finite log-det, exact round trip.
    t = PlanarTransform(w[1] / 5, u[1] / 10, torch.tensor(0.2, dtype=torch.float64))
    x = torch.randn(100, 2, dtype=torch.float64)
    y, ladj = t.call_and_ladj(x)
    assert torch.isfinite(ladj).all()
    assert (t.inv(y) - x).abs().max() < 1e-5


def test_radial_constraint_holds_for_adversarial_parameters():
    t = RadialTransform(torch.zeros(3, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64),
                        torch.tensor(-8.0, dtype=torch.float64))
    alpha, beta = t._coefficients()
    assert beta > -alpha and beta < -alpha + 1e-3  # beta pushed towards -alpha, never below
    x = torch.randn(100, 3, dtype=torch.float64)
    y, ladj = t.call_and_ladj(x)
    assert torch.isfinite(ladj).all()
    assert (t.inv(y) - x).abs().max() < 1e-8


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_stacked_params(name):
    spec, _, c = _flow(name, 2, torch.float32)
    x = torch.randn(64, 3)
    stacked = init_stacked(spec, 3, seed=4)
    mapped = vmap(lambda p: spec.apply(p, c).log_prob(x))(stacked)
    looped = torch.stack([spec.apply(p, c).log_prob(x) for p in tree_unstack(stacked)])
    torch.testing.assert_close(mapped, looped, atol=1e-5, rtol=1e-5)
    samples = vmap(lambda p: spec.apply(p, c).sample(), randomness="different")(stacked)
    assert samples.shape == (3, 64, 3) and torch.isfinite(samples).all()


@pytest.mark.parametrize("name", NAMES)
def test_compiled_log_prob_and_inverse_equal_eager(name):
    torch._dynamo.reset()
    spec, params, c = _flow(name, 2, torch.float32, iterations=8) if name == "Planar" else _flow(name, 2, torch.float32)
    x = torch.randn(64, 3)
    f = torch.compile(lambda p, c, x: spec.apply(p, c).log_prob(x), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(f(params, c, x), spec.apply(params, c).log_prob(x), atol=1e-5, rtol=1e-5)
    g = torch.compile(lambda p, c, z: spec.apply(p, c).transform.inv(z), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(g(params, c, x), spec.apply(params, c).transform.inv(x), atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("name", NAMES)
def test_adapter_module_and_state_dict_round_trip(name):
    module = getattr(zflows, name)(3, 2, transforms=2)
    assert isinstance(module.spec, getattr(flows, name))
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    params = dict(module.named_parameters())
    torch.testing.assert_close(module(c).log_prob(x), module.spec.apply(params, c).log_prob(x))
    other = getattr(zflows, name)(3, 2, transforms=2)
    other.load_state_dict(module.state_dict())
    torch.testing.assert_close(other(c).log_prob(x), module(c).log_prob(x))
    assert sorted(flatten_names(module.spec.init())) == sorted(params)
