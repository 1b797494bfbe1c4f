r"""Every core distribution takes ``key=``: reproducible, member ``b`` of a batch drawn with
``split(key, B)[b]``, reparameterized draws differentiate w.r.t. parameters, and without a
key torch's generator is used as before."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from lazydist_functional import random
from lazydist_functional.checks import ShapeError
from lazydist_functional.distributions import (
    BoxUniform,
    DiagNormal,
    GeneralizedNormal,
    Joint,
    Maximum,
    Minimum,
    Mixture,
    MultivariateNormal,
    Sort,
    TopK,
    TransformedUniform,
    Truncated,
)
from lazydist_functional.transforms import MonotonicAffineTransform

KEY = random.key(3)


def _batched(B: int):
    r"""``(name, make)``: ``make(i)`` is member ``i`` (batch shape ``()``), ``make(None)`` the batch."""

    g = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(B, 2, generator=g), torch.rand(B, 2, generator=g) + 0.5
    beta = torch.rand(B, generator=g) + 0.5
    logits = torch.randn(B, 3, generator=g)
    comp = torch.randn(B, 3, 2, generator=g)

    def pick(t, i):
        return t if i is None else t[i]

    return {
        "DiagNormal": lambda i: DiagNormal(pick(loc, i), pick(scale, i)),
        "BoxUniform": lambda i: BoxUniform(pick(loc, i), pick(loc, i) + pick(scale, i)),
        "MultivariateNormal": lambda i: MultivariateNormal(pick(loc, i), scale_tril=torch.diag_embed(pick(scale, i))),
        "Mixture": lambda i: Mixture(DiagNormal(pick(comp, i), torch.ones(2)), pick(logits, i)),
        "Joint": lambda i: Joint(DiagNormal(pick(loc, i), pick(scale, i)), Normal(pick(beta, i), 1.0)),
        "GeneralizedNormal": lambda i: GeneralizedNormal(pick(beta, i)),
        "TransformedUniform": lambda i: TransformedUniform(
            MonotonicAffineTransform(pick(beta, i), torch.tensor(0.0)), torch.tensor(-1.0), torch.tensor(2.0)
        ),
        "Truncated": lambda i: Truncated(Normal(pick(beta, i), 1.0), 0.0, 1.0),
        "Sort": lambda i: Sort(Normal(pick(beta, i), 1.0), n=3),
        "TopK": lambda i: TopK(Normal(pick(beta, i), 1.0), k=2, n=4),
        "Minimum": lambda i: Minimum(Normal(pick(beta, i), 1.0), n=3),
        "Maximum": lambda i: Maximum(Normal(pick(beta, i), 1.0), n=3),
    }


NAMES = sorted(_batched(1))


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_members_and_is_reproducible(name):
    make = _batched(3)[name]
    d = make(None)
    x = d.sample((5,), key=KEY)
    assert x.shape == (5, *d.batch_shape, *d.event_shape)
    assert torch.equal(x, d.sample((5,), key=KEY)) and not torch.equal(x, d.sample((5,), key=random.key(4)))
    keys = random.split(KEY, 3)
    for b in range(3):
        assert torch.equal(x[:, b], make(b).sample((5,), key=keys[b]))
    mapped = torch.vmap(lambda k: make(0).sample((5,), key=k))(keys)
    assert torch.equal(mapped[1], make(0).sample((5,), key=keys[1]))
    y, lp = d.rsample_and_log_prob((5,), key=KEY)
    assert torch.equal(y, x) and torch.isfinite(lp).all()


@pytest.mark.parametrize("name", ["DiagNormal", "BoxUniform", "MultivariateNormal", "GeneralizedNormal", "Truncated"])
def test_rsample_with_a_key_differentiates_wrt_parameters(name):
    beta = torch.tensor([0.7, 2.0], requires_grad=True)
    d = {
        "DiagNormal": lambda: DiagNormal(beta, beta + 1),
        "BoxUniform": lambda: BoxUniform(beta, beta + 1),
        "MultivariateNormal": lambda: MultivariateNormal(beta, scale_tril=torch.diag_embed(beta + 1)),
        "GeneralizedNormal": lambda: GeneralizedNormal(beta),
        "Truncated": lambda: Truncated(Normal(beta, 1.0), 0.0, 1.0),
    }[name]()
    d.rsample((8,), key=KEY).sum().backward()
    assert torch.isfinite(beta.grad).all() and beta.grad.abs().sum() > 0


def test_keyed_generalized_normal_has_the_right_moments():
    # E|X|^beta = 1/beta; the mean of n draws is within 5 standard errors (false alarm < 1e-6)
    for beta in (0.5, 1.0, 3.0):
        x = GeneralizedNormal(torch.tensor(beta)).sample((20000,), key=KEY)
        m = x.abs().double() ** beta
        assert abs(m.mean() - 1 / beta) < 5 * m.std() / math.sqrt(len(m))
        assert abs((x > 0).double().mean() - 0.5) < 5 * 0.5 / math.sqrt(len(m))


def test_without_a_key_torch_generator_is_used_as_before():
    d = DiagNormal(torch.zeros(3), torch.ones(3))
    torch.manual_seed(0)
    x = d.sample((2,))
    torch.manual_seed(0)
    assert torch.equal(x, torch.randn(2, 3))
    with pytest.raises(NotImplementedError, match="not reparameterizable"):
        _batched(1)["Mixture"](None).rsample(key=KEY)


def test_a_key_of_the_wrong_shape_is_an_error():
    with pytest.raises(ShapeError, match=r"one key of shape \(2,\)"):
        DiagNormal(torch.zeros(3), torch.ones(3)).sample(key=random.split(KEY, 2))
