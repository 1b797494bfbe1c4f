r"""Joint, GeneralizedNormal, TransformedUniform, Truncated, Sort, TopK, Minimum, Maximum:
parity with Zuko 1.6, shapes, sampling, and vmap where the base is this library's."""

from __future__ import annotations

import math

import pytest
import torch
import zuko
from torch.distributions import Normal
from torch.func import grad, vmap

import lazydist_functional.distributions as D
from lazydist_functional.transforms import MonotonicAffineTransform

BASE = Normal(torch.zeros(4), torch.ones(4), validate_args=False)


def _sorted(k, descending=False):
    return torch.sort(torch.randn(6, 4, k), dim=-1, descending=descending).values


CASES = [
    ("Sort", (BASE, 3), {}, lambda: _sorted(3)),
    ("Sort", (BASE, 3), {"descending": True}, lambda: _sorted(3, True)),
    ("TopK", (BASE, 2, 4), {}, lambda: _sorted(2)),
    ("Minimum", (BASE, 3), {}, lambda: torch.randn(6, 4)),
    ("Maximum", (BASE, 3), {}, lambda: torch.randn(6, 4)),
    ("Truncated", (BASE, -0.5, 1.0), {}, lambda: torch.rand(6, 4) * 1.4 - 0.5),
    ("GeneralizedNormal", (torch.tensor([0.7, 1.5, 2.0, 3.0]),), {}, lambda: torch.randn(6, 4)),
]


@pytest.mark.parametrize("name, args, kwargs, draw", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_parity_with_zuko_and_shapes(name, args, kwargs, draw):
    ours, ref = getattr(D, name)(*args, **kwargs), getattr(zuko.distributions, name)(*args, **kwargs)
    x = draw()
    assert torch.allclose(ours.log_prob(x), ref.log_prob(x), atol=1e-5)
    assert ours.batch_shape == ref.batch_shape and ours.event_shape == ref.event_shape
    s = ours.sample((5,))
    assert s.shape == ref.sample((5,)).shape
    assert torch.isfinite(ours.log_prob(s)).all()  # samples lie in the support


def test_order_statistics_are_ordered_and_out_of_order_is_impossible():
    d = D.Sort(BASE, 3)
    x = d.sample((100,))
    assert bool((x[..., 1:] >= x[..., :-1]).all())
    assert torch.isinf(d.log_prob(torch.flip(x, dims=(-1,)))).all()
    # Minimum density integrates to one (trapezoid over a wide grid)
    grid = torch.linspace(-8, 8, 4001)
    density = D.Minimum(Normal(0.0, 1.0), 4).log_prob(grid).exp()
    assert abs(float(torch.trapezoid(density, grid)) - 1) < 1e-4


def test_truncated_samples_stay_in_bounds_and_normalize():
    d = D.Truncated(Normal(0.0, 1.0), 0.5, 2.0)
    s = d.sample((2000,))
    assert bool(((s >= 0.5) & (s < 2.0)).all())
    grid = torch.linspace(0.5, 2.0, 3001)[:-1]
    assert abs(float(torch.trapezoid(d.log_prob(grid).exp(), grid)) - 1) < 1e-3


def test_joint_and_transformed_uniform():
    marginals = (D.DiagNormal(torch.zeros(2), torch.ones(2)), D.BoxUniform(torch.zeros(1), torch.ones(1)))
    ours = D.Joint(*marginals)
    ref = zuko.distributions.Joint(zuko.distributions.DiagNormal(torch.zeros(2), torch.ones(2)),
                                   zuko.distributions.BoxUniform(torch.zeros(1), torch.ones(1)))
    x = torch.cat((torch.randn(5, 2), torch.rand(5, 1)), dim=-1)
    assert torch.allclose(ours.log_prob(x), ref.log_prob(x))
    # a Joint of pytree distributions is itself returned from vmap as a batched distribution
    locs = torch.randn(4, 2)
    batched = vmap(lambda m: D.Joint(D.DiagNormal(m, torch.ones(2)), D.BoxUniform(torch.zeros(1), torch.ones(1))))(locs)
    assert batched.batch_shape == (4,) and batched.event_shape == (3,)
    assert torch.allclose(batched.log_prob(x[:4]), torch.stack([
        D.Joint(D.DiagNormal(locs[i], torch.ones(2)), marginals[1]).log_prob(x[i]) for i in range(4)]))
    f = MonotonicAffineTransform(torch.tensor(0.5), torch.tensor(0.3))
    tu = D.TransformedUniform(f, torch.tensor(-1.0), torch.tensor(2.0))
    ref = zuko.distributions.TransformedUniform(zuko.transforms.MonotonicAffineTransform(torch.tensor(0.5), torch.tensor(0.3)),
                                                torch.tensor(-1.0), torch.tensor(2.0))
    y = torch.rand(7) * 3 - 1
    assert torch.allclose(tu.log_prob(y), ref.log_prob(y), atol=1e-6)
    assert torch.allclose(tu.log_prob(y).exp(), torch.full((7,), 1 / 3), atol=1e-6)  # affine: uniform on [l, u)


def test_generalized_normal_vmap_sampling_and_density():
    beta = torch.tensor([1.0, 2.0, 4.0])
    s = vmap(lambda b: D.GeneralizedNormal(b).rsample((3,)), randomness="different")(beta)
    assert s.shape == (3, 3) and s.unique().numel() == 9
    grid = torch.linspace(-20, 20, 40001)  # Laplace (beta=1) tails beyond 20: 2e-9
    for b in beta:
        assert abs(float(torch.trapezoid(D.GeneralizedNormal(b).log_prob(grid).exp(), grid)) - 1) < 1e-3
    assert torch.allclose(D.GeneralizedNormal(torch.tensor(2.0)).log_prob(torch.tensor(0.0)),
                          torch.tensor(math.log(1 / math.sqrt(math.pi))))


def test_truncated_with_bounds_of_shape_1_1_under_torch_func():
    # vmap over the base's parameter (a batched distribution), grad of log_prob, draws per member
    locs = torch.tensor([0.0, 0.5, 1.0])
    lower, upper = torch.tensor([[-0.5]]), torch.tensor([[1.5]])
    value = torch.tensor([[0.2]])

    def log_prob(loc):
        return D.Truncated(Normal(loc, 1.0), lower, upper).log_prob(value).sum()

    each = torch.stack([log_prob(m) for m in locs])
    torch.testing.assert_close(vmap(log_prob)(locs), each)
    h = 1e-3
    numeric = torch.stack([(log_prob(m + h) - log_prob(m - h)) / (2 * h) for m in locs.double()])
    torch.testing.assert_close(vmap(grad(log_prob))(locs), numeric.float(), atol=1e-3, rtol=1e-3)
    draws = vmap(lambda m: D.Truncated(Normal(m, 1.0), lower, upper).rsample((4,)), randomness="different")(locs)
    assert draws.shape == (3, 4, 1, 1) and bool(((draws >= -0.5) & (draws < 1.5)).all())
