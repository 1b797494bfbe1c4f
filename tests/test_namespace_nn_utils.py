r"""``adapters.nn``, ``.utils`` and ``.bayesian`` against Zuko 1.6: the same public names,
constructor signatures, state-dict layouts and behaviour; the pure networks' protocol."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn as nn
import zuko
import zuko.bayesian
import zuko.nn
import zuko.utils

import lazydist_functional as L
import lazydist_functional.adapters as Z
from lazydist_functional.nn import GaussianWeight, Network, linear, on_device

PAIRS = [(zuko.nn, Z.nn), (zuko.utils, Z.utils), (zuko.bayesian, Z.bayesian)]


def _public(module) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


@pytest.mark.parametrize("ref, ours", PAIRS, ids=lambda m: m.__name__)
def test_public_names_and_all_equal_zukos(ref, ours):
    assert _public(ours) == _public(ref)
    assert sorted(ours.__all__) == sorted(ref.__all__)
    for name in _public(ref):  # classes stay classes, functions functions
        assert inspect.isclass(getattr(ours, name)) == inspect.isclass(getattr(ref, name)), name


@pytest.mark.parametrize("name", ["Linear", "MonotonicLinear", "MaskedLinear", "LayerNorm", "TwoWayELU"])
def test_layer_signatures_equal_zukos(name):
    ours, ref = inspect.signature(getattr(Z.nn, name)), inspect.signature(getattr(zuko.nn, name))
    if name == "MaskedLinear":  # Zuko forwards **kwargs to nn.Linear (bias, device, dtype)
        assert list(ours.parameters)[0] == list(ref.parameters)[0] == "adjacency"
    else:
        assert list(ours.parameters) == list(ref.parameters)
        assert [p.default for p in ours.parameters.values()] == [p.default for p in ref.parameters.values()]


def _load(ours: nn.Module, ref: nn.Module) -> None:
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    ours.load_state_dict(ref.state_dict())


def test_layers_match_zuko_outputs():
    torch.manual_seed(0)
    A = torch.randn(4, 3) < 0
    A[:, 0] = True
    cases = [
        (Z.nn.MaskedLinear(A), zuko.nn.MaskedLinear(A), torch.randn(5, 3)),
        (Z.nn.MonotonicLinear(3, 2), zuko.nn.MonotonicLinear(3, 2), torch.randn(5, 3)),
        (Z.nn.MonotonicLinear(3, 2, stack=4), zuko.nn.MonotonicLinear(3, 2, stack=4), torch.randn(5, 4, 3)),
        (Z.nn.Linear(3, 2, bias=False), zuko.nn.Linear(3, 2, bias=False), torch.randn(5, 3)),
        (Z.nn.MonotonicMLP(3, 4, [8, 8]), zuko.nn.MonotonicMLP(3, 4, [8, 8]), torch.randn(5, 3)),
        (Z.nn.MaskedMLP(A, [8, 8], activation=nn.ELU), zuko.nn.MaskedMLP(A, [8, 8], activation=nn.ELU),
         torch.randn(5, 3)),
    ]
    for ours, ref, x in cases:
        _load(ours, ref)
        assert torch.allclose(ours(x), ref(x), atol=1e-6), type(ours).__name__
    x = torch.randn(6, 4)
    assert torch.allclose(Z.nn.TwoWayELU(alpha=0.5)(x), zuko.nn.TwoWayELU(alpha=0.5)(x))
    assert isinstance(Z.nn.TwoWayELU(), nn.ELU) and issubclass(Z.nn.MonotonicLinear, Z.nn.Linear)
    x, W = torch.randn(5, 2, 4), torch.randn(2, 3, 4)  # stacked operators
    assert torch.allclose(Z.nn.linear(x, W), zuko.nn.linear(x, W), atol=1e-6)


def test_networks_follow_the_network_protocol():
    for net in (L.nn.MLP(3, 2), L.nn.MaskedMLP(torch.ones(2, 3, dtype=torch.bool)), L.nn.MonotonicMLP(3, 2),
                L.nn.Linear(3, 2), L.nn.MaskedLinear(torch.ones(2, 3, dtype=torch.bool)), L.nn.LayerNorm()):
        assert isinstance(net, Network) and not isinstance(net, L.Spec)
        y = net.apply(net.init(), torch.randn(4, 3))
        assert y.shape[0] == 4
    net = L.nn.MLP(3, 2)
    with pytest.raises(ValueError, match=r"\(\*, 3\)"):
        net.apply(net.init(), torch.randn(4, 5))
    with pytest.raises(TypeError, match="dtype"):
        net.apply(net.init(), torch.randn(4, 3, dtype=torch.float64))
    # flat dotted trees (dict(module.named_parameters())) are accepted, as by specs
    flat = dict(L.pytree.flatten_names(net.init()))
    assert net.apply(flat, torch.randn(3)).shape == (2,)


def test_meta_helper_builds_shapes_without_data():
    calls = []
    t = on_device(lambda: calls.append(1) or torch.ones(2), (2,), torch.float32, "meta")
    assert t.device.type == "meta" and t.shape == (2,) and not calls
    assert L.nn.MaskedMLP(torch.ones(2, 3, dtype=torch.bool), [4]).init_state(device="meta")["0"]["mask"].is_meta


def test_gaussian_weight_is_a_sample_and_samples_linear_outputs():
    torch.manual_seed(0)
    loc, var = torch.randn(2, 3), torch.rand(2, 3)
    w = GaussianWeight(loc, var)
    assert type(w * 1) is torch.Tensor and torch.equal(w * 1, torch.Tensor(w))  # other ops: the sample
    x = torch.randn(20000, 3)
    y = linear(x, w)
    assert torch.equal(y, nn.functional.linear(x, w))  # one noise draw per shape, nn.Linear included
    # local trick: y | x ~ N(x mu^T, x^2 var^T), independent across rows
    z = (y - x @ loc.T) / (x.square() @ var.T).sqrt()
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03
    mask = torch.tensor([[True, False, True], [False, True, True]])
    ym = linear(x[:5], w, mask=mask)
    assert ym.shape == (5, 2)


def test_bayesian_local_trick_matches_zuko_moments():
    torch.manual_seed(0)
    ref = zuko.bayesian.BayesianModel(zuko.nn.MLP(3, 2, [8]), init_logvar=-2.0)
    ours = Z.bayesian.BayesianModel(Z.nn.MLP(3, 2, [8]), init_logvar=-2.0)
    ours.load_state_dict(ref.state_dict())
    assert torch.allclose(ours.kl_divergence(), ref.kl_divergence())
    x = torch.randn(3).expand(4000, 3)  # one input, many independent draws of the first layer's noise
    with ref.reparameterize(local_trick=True) as r, ours.reparameterize(local_trick=True) as o:
        yr, yo = r(x), o(x)
    assert torch.allclose(yr.mean(0), yo.mean(0), atol=0.05) and torch.allclose(yr.std(0), yo.std(0), rtol=0.1)
    # the base module holds its own parameters again
    assert all(type(p) is nn.Parameter for p in ours.base.parameters())


def test_utils_gradients_match_zuko():
    alpha = torch.tensor(1.5, requires_grad=True)
    a, b = torch.randn(2, 16, requires_grad=True)
    f = lambda x: alpha * x**5 - x**2  # noqa: E731
    grads = [torch.autograd.grad(U.gauss_legendre(f, a, b, n=3, phi=(alpha,)).sum(), (a, b, alpha)) for U in (Z.utils, zuko.utils)]
    assert all(torch.allclose(g, h, atol=1e-5) for g, h in zip(*grads))
    # odeint: gradients w.r.t. the end time and the closed-over parameters, as Zuko's adjoint
    t = torch.tensor(2.0, requires_grad=True)
    x0 = torch.randn(8, requires_grad=True)
    g = lambda t, x: -alpha * x  # noqa: E731
    grads = [torch.autograd.grad(U.odeint(g, x0, 0.0, t, phi=(alpha,), atol=1e-7, rtol=1e-6).sum(), (x0, t, alpha))
             for U in (Z.utils, zuko.utils)]
    assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(*grads))
    # a sequence state: f(t, *x) returns one derivative per tensor
    x1, v1 = Z.utils.odeint(lambda t, x, v: (v, -x), (torch.ones(1), torch.zeros(1)), 0.0, torch.pi / 2)
    assert torch.allclose(x1, torch.zeros(1), atol=1e-5) and torch.allclose(v1, -torch.ones(1), atol=1e-5)


def test_bisection_with_a_decreasing_bracket_delegates_to_roots():
    y = torch.linspace(-0.9, 0.9, 7)
    x = Z.utils.bisection(torch.cos, y, torch.pi, 0.0, n=24)
    assert torch.allclose(x, torch.acos(y), atol=1e-6)
    assert torch.allclose(Z.utils.Bisection.apply(torch.cos, y, torch.tensor(torch.pi), torch.tensor(0.0), 24), x)
