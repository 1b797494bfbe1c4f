r"""Transforms: invertibility (hypothesis over shapes and seeds),
log-determinants against autograd, structure (autoregressive / coupling), pytrees."""

from __future__ import annotations

import math

import pytest
import torch
import zuko
import torch.utils._pytree as torch_pytree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.func import jacrev, vmap

import lazydist_functional.adapters as A
import lazydist_functional.transforms as T
from lazydist_functional import Partial, flows
from lazydist_functional.transforms import (
    AdditiveTransform,
    ComposedTransform,
    DependentTransform,
    MonotonicAffineTransform,
    MonotonicRQSTransform,
    PermutationTransform,
)

from conftest import FEATURES, HIDDEN, assert_close, make_spec

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

batch_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple)
seeds = st.integers(0, 2**16)

SPECS = {(n, c): make_spec(n, c) for n in ("MAF", "NSF", "RealNVP", "NICE") for c in (0, 2)}


@pytest.mark.parametrize("key", list(SPECS), ids=[f"{n}-c{c}" for n, c in SPECS])
@SETTINGS
@given(batch=batch_shapes, seed=seeds)
def test_flow_transform_inverts_for_any_batch_shape(key, batch, seed):
    spec = SPECS[key]
    g = torch.Generator().manual_seed(seed)
    params = spec.init(g)
    c = torch.randn(*batch, 2, generator=g) if key[1] else None
    x = torch.randn(*batch, FEATURES, generator=g)
    d = spec.apply(params, c)
    y, ladj = d.transform.call_and_ladj(x)
    assert y.shape == x.shape and ladj.shape == batch
    assert (d.transform.inv(y) - x).abs().max() <= 1e-4
    xi, ladj_inv = d.transform.inv.call_and_ladj(y)
    assert (xi - x).abs().max() <= 1e-4
    assert_close(ladj_inv, -ladj, atol=1e-4, what="inverse ladj")
    lp = d.log_prob(x)
    assert lp.shape == batch and torch.isfinite(lp).all()


def _elementwise_check(t, x: torch.Tensor, atol: float = 1e-5):
    y, ladj = t.call_and_ladj(x)
    assert_close(t(x), y, atol=0, what="call vs call_and_ladj")
    dydx = vmap(torch.func.grad(lambda v: t(v)))(x.reshape(-1)).reshape(x.shape) if t_is_scalar(t) else None
    if dydx is not None:
        assert (dydx > 0).all()
        assert_close(ladj, dydx.log(), atol=atol, what="ladj vs autograd")
    xi, ladj_inv = t.inverse_and_ladj(y)
    assert_close(xi, x, atol=1e-4, what="inverse")
    assert_close(ladj_inv, -ladj, atol=1e-4, what="inverse ladj")
    assert_close(t.inv(y), x, atol=1e-4, what="inv")


def t_is_scalar(t) -> bool:
    return all(getattr(t, name).dim() == 0 for name in t._pytree_children)


@SETTINGS
@given(seed=seeds, bins=st.integers(2, 8))
def test_rqs_spline_elementwise(seed, bins):
    g = torch.Generator().manual_seed(seed)
    w, h, d = (2 * torch.randn(bins, generator=g, dtype=torch.float64),
               2 * torch.randn(bins, generator=g, dtype=torch.float64),
               2 * torch.randn(bins - 1, generator=g, dtype=torch.float64))
    t = MonotonicRQSTransform(w, h, d)
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    _elementwise_check(t, x, atol=1e-8)
    y = t(x)
    assert (y[1:] > y[:-1]).all()  # strictly increasing
    outside = x.abs() > 5
    assert torch.equal(y[outside], x[outside])  # identity outside [-B, B]
    assert (t.call_and_ladj(x)[1][outside] == 0).all()
    # continuous at the boundary
    edge = torch.tensor([-5 - 1e-9, -5 + 1e-9, 5 - 1e-9, 5 + 1e-9], dtype=torch.float64)
    ye = t(edge)
    assert (ye[1] - ye[0]).abs() < 1e-6 and (ye[3] - ye[2]).abs() < 1e-6


@SETTINGS
@given(shift=st.floats(-3, 3), scale=st.floats(-5, 5))
def test_affine_elementwise(shift, scale):
    t = MonotonicAffineTransform(torch.tensor(shift, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64))
    x = torch.linspace(-4, 4, 17, dtype=torch.float64)
    _elementwise_check(t, x, atol=1e-10)
    # the slope stays within (slope, 1/slope)
    s = t.log_scale.exp()
    assert 1e-3 < s < 1e3


def test_additive_is_volume_preserving():
    t = AdditiveTransform(torch.tensor([1.0, -2.0, 0.5]))
    x = torch.randn(7, 3)
    y, ladj = t.call_and_ladj(x)
    assert_close(y, x + torch.tensor([1.0, -2.0, 0.5]))
    assert torch.equal(ladj, torch.zeros_like(x))
    assert_close(t.inv(y), x)


def test_nice_with_additive_couplings():
    spec = flows.NICE(FEATURES, 2, hidden_features=HIDDEN, univariate=AdditiveTransform, shapes=[()])
    params = spec.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(6, 2), torch.randn(6, FEATURES)
    d = spec.apply(params, c)
    y, ladj = d.transform.call_and_ladj(x)
    assert torch.equal(ladj, torch.zeros(6))
    assert (y - x).abs().max() > 1e-2
    assert (d.transform.inv(y) - x).abs().max() < 1e-5
    # log p(x) = log N(f(x); 0, I) exactly
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(y).sum(-1)
    assert_close(d.log_prob(x), expected, atol=1e-5)


@pytest.mark.parametrize("passes", [None, 2])
def test_masked_autoregressive_jacobian_respects_order(passes):
    order = torch.tensor([2, 0, 3, 1])
    spec = flows.MaskedAutoregressiveTransform(4, 2, passes=passes, order=order, hidden_features=HIDDEN)
    params = spec.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(2), torch.randn(4)
    t = spec.apply(params, c)
    J = jacrev(t)(x)
    rank = spec.order  # the (grouped) order the transform uses
    allowed = (rank[:, None] > rank[None, :]) | torch.eye(4, dtype=torch.bool)
    assert (J[~allowed] == 0).all()
    # and it does use the allowed dependencies
    assert (J[allowed & ~torch.eye(4, dtype=torch.bool)].abs() > 0).any()
    assert_close(t.inv(t(x)), x, atol=1e-5)
    assert_close(torch.linalg.slogdet(J).logabsdet, t.call_and_ladj(x)[1], atol=1e-5)


def test_coupling_keeps_the_constant_part():
    mask = torch.tensor([True, False, True, False, False])
    spec = flows.GeneralCouplingTransform(5, 2, mask=mask, hidden_features=HIDDEN)
    t = spec.apply(spec.init(torch.Generator().manual_seed(0)), torch.randn(2))
    x = torch.randn(8, 5)
    y = t(x)
    assert torch.equal(y[:, mask], x[:, mask])
    assert (y[:, ~mask] - x[:, ~mask]).abs().max() > 1e-2
    J = jacrev(t)(x[0])
    assert torch.equal(J[mask], torch.eye(5)[mask])  # rows of x_a: identity
    assert (J[~mask][:, ~mask] * (1 - torch.eye(3))).abs().max() == 0  # x_b element-wise given x_a


def test_permutation_composed_dependent():
    perm = PermutationTransform(torch.tensor([2, 0, 1]))
    affine = DependentTransform(MonotonicAffineTransform(torch.tensor([0.5, 0.0, -1.0]), torch.tensor([1.0, -1.0, 0.2])), 1)
    t = ComposedTransform(perm, affine, perm.inv)
    x = torch.randn(5, 3)
    y, ladj = t.call_and_ladj(x)
    assert ladj.shape == (5,)
    J = vmap(jacrev(t))(x)
    assert_close(ladj, torch.linalg.slogdet(J).logabsdet, atol=1e-5)
    assert_close(t.inv(y), x, atol=1e-5)
    assert_close(perm(torch.tensor([10.0, 11.0, 12.0])), torch.tensor([12.0, 10.0, 11.0]))


def test_partial_with_none_arguments_is_a_tensor_only_pytree():
    p = Partial(torch.add, (torch.ones(2), None))
    leaves, _ = torch_pytree.tree_flatten(p)
    assert all(isinstance(leaf, torch.Tensor) for leaf in leaves) and len(leaves) == 1
    out = vmap(lambda v: Partial(torch.mul, (v, None)))(torch.arange(3.0))
    assert isinstance(out, Partial) and out.args[1] is None
    assert torch.equal(out.args[0], torch.arange(3.0))


def test_transforms_out_of_vmap_are_batched():
    spec = make_spec("MAF", 0)
    from lazydist_functional import init_stacked, tree_unstack

    P = init_stacked(spec, 3)
    t = vmap(lambda p: spec.apply(p).transform)(P)
    x = torch.randn(3, FEATURES)
    y, ladj = t.call_and_ladj(x)
    for k, p in enumerate(tree_unstack(P)):
        yk, lk = spec.apply(p).transform.call_and_ladj(x[k])
        assert_close(y[k], yk)
        assert_close(ladj[k], lk)
    assert_close(t.inv(y), x, atol=1e-5)


def test_adapter_transforms_namespace_is_zukos():
    # ``lazydist_functional.adapters.transforms`` has exactly Zuko 1.6's public names,
    # torch's re-exported transforms and Zuko's utilities included.
    def public(module):
        return {n for n in dir(module) if not n.startswith("_")}

    assert public(A.transforms) == public(zuko.transforms)
    assert A.transforms.odeint is A.utils.odeint
    assert A.transforms.ComposeTransform is torch.distributions.ComposeTransform
    assert sorted(A.transforms.__all__) == sorted(zuko.transforms.__all__)


@pytest.mark.parametrize(
    "make",
    [
        lambda: T.BernsteinTransform(torch.randn(3, 8), cache_size=1),
        lambda: T.GaussianizationTransform(torch.randn(3, 4), torch.randn(3, 4), bogus=1),
        lambda: T.SOSPolynomialTransform(torch.randn(3, 2, 4), bogus=1),
        lambda: T.UnconstrainedMonotonicTransform(torch.exp, bogus=1),
    ],
)
def test_monotonic_transforms_reject_unknown_keywords(make):
    with pytest.raises(TypeError, match="unexpected keyword"):
        make()


def test_one_soft_bound():
    x = torch.tensor([-4.0, -1.0, 0.0, 3.0])
    assert torch.allclose(T.soft_bound(x, 2.0), x / (1 + x.abs() / 2))
    assert torch.allclose(T.SoftclipTransform(2.0)(x), T.soft_bound(x, 2.0))
    # the affine transform's log-scale is the soft bound of its unconstrained scale
    t = T.MonotonicAffineTransform(torch.zeros(4), x, slope=1e-3)
    assert torch.allclose(t.log_scale, T.soft_bound(x, -math.log(1e-3)))
