r"""Distributions are the torch classes Zuko's are (bases, attributes, KL rules) and remain
pytrees (a vmapped builder returns a batched distribution of the same class); the
adapter's ``distributions``/``mixtures`` namespaces hold exactly Zuko 1.6's names;
``NormalizingFlow.log_prob`` checks its input's shapes first."""

from __future__ import annotations

import pytest
import torch
import zuko
from torch.distributions import ExpTransform, Gamma, Normal, kl_divergence
from torch.func import vmap

import lazydist_functional as L
import lazydist_functional.adapters as Z
import lazydist_functional.distributions as D

T = torch.distributions


def _pairs():
    r"""(name, ours, Zuko's) built from the same arguments (torch bases where Zuko's need them)."""

    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.5
    n = Normal(0.0, 1.0)
    return [
        ("DiagNormal", (loc, scale), {}),
        ("BoxUniform", (-scale, scale), {}),
        ("GeneralizedNormal", (torch.tensor([1.5, 2.0]),), {}),
        ("Joint", (Normal(0.0, 1.0), T.Uniform(0.0, 1.0)), {}),
        ("Mixture", (Normal(torch.randn(2), torch.ones(2)), torch.randn(2)), {}),
        ("NormalizingFlow", (ExpTransform(), Gamma(2.0, 1.0)), {}),
        ("TransformedUniform", (ExpTransform(), -1.0, 1.0), {}),
        ("Truncated", (n, 1.0, 2.0), {}),
        ("Sort", (n, 3), {}),
        ("TopK", (n, 2, 3), {}),
        ("Minimum", (n, 3), {}),
        ("Maximum", (n, 3), {}),
    ]


def _torch_bases(cls: type) -> set[type]:
    return {c for c in cls.__mro__ if c.__module__.startswith("torch.distributions")}


@pytest.mark.parametrize("name, args, kwargs", _pairs(), ids=[p[0] for p in _pairs()])
def test_same_torch_bases_and_attributes_as_zuko(name, args, kwargs):
    ours, ref = getattr(D, name)(*args, **kwargs), getattr(zuko.distributions, name)(*args, **kwargs)
    assert _torch_bases(type(ref)) <= _torch_bases(type(ours)), name
    missing = {a for a in dir(ref) if not a.startswith("_")} - set(dir(ours))
    assert not missing, f"{name} lacks {sorted(missing)}"
    assert ours.batch_shape == ref.batch_shape and ours.event_shape == ref.event_shape
    x = ref.sample((5,))
    assert torch.allclose(ours.log_prob(x), ref.log_prob(x), atol=1e-5)
    e = ours.expand((2, *ours.batch_shape))
    assert type(e) is type(ours) and e.batch_shape == (2, *ours.batch_shape)
    assert e.log_prob(e.sample()).shape == e.batch_shape


def test_diag_normal_is_an_independent_normal():
    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.5
    ours, ref = D.DiagNormal(loc, scale), zuko.distributions.DiagNormal(loc, scale)
    assert isinstance(ours, T.Independent) and isinstance(ours.base_dist, Normal)
    assert ours.reinterpreted_batch_ndims == ref.reinterpreted_batch_ndims == 1
    for attr in ("mean", "mode", "stddev", "variance"):
        assert torch.equal(getattr(ours, attr), getattr(ref, attr)), attr
    assert torch.allclose(ours.entropy(), ref.entropy())
    assert torch.equal(ours.base_dist.loc, ref.base_dist.loc) and torch.equal(ours.base_dist.scale, ref.base_dist.scale)
    assert repr(ours) == repr(ref)
    other = (D.DiagNormal(loc + 1, scale), zuko.distributions.DiagNormal(loc + 1, scale))
    assert torch.allclose(kl_divergence(ours, other[0]), kl_divergence(ref, other[1]))
    box = D.BoxUniform(-scale, scale)
    assert isinstance(box, T.Independent) and isinstance(box.base_dist, T.Uniform)
    assert torch.equal(box.base_dist.high, scale) and repr(box) == repr(zuko.distributions.BoxUniform(-scale, scale))


@pytest.mark.parametrize("params_shape, x_shape, ndims", [
    ((3,), (7, 3), 1),  # unbatched parameters: the normalizer is summed on their own shape
    ((4, 3), (2, 4, 3), 1),
    ((2, 3), (5, 2, 3), 2),
    ((1,), (7, 3), 1),  # an event dim that broadcasts: the per-element form
    ((4, 1), (4, 3), 1),
])
def test_diag_normal_log_prob_is_torchs_for_every_broadcast(params_shape, x_shape, ndims):
    loc, scale = torch.randn(params_shape, dtype=torch.float64), torch.rand(params_shape, dtype=torch.float64) + 0.5
    x = torch.randn(x_shape, dtype=torch.float64)
    ref = T.Independent(Normal(loc, scale), ndims).log_prob(x)
    torch.testing.assert_close(D.DiagNormal(loc, scale, ndims).log_prob(x), ref, rtol=1e-12, atol=1e-12)


def test_multivariate_normal_is_torchs():
    L_ = torch.tril(torch.randn(1, 3, 3), -1) + torch.diag_embed(torch.rand(1, 3) + 1)
    loc = torch.randn(4, 3)
    ours, ref = D.MultivariateNormal(loc, scale_tril=L_), T.MultivariateNormal(loc, scale_tril=L_)
    assert isinstance(ours, T.MultivariateNormal)
    for attr in ("loc", "mean", "scale_tril", "covariance_matrix", "precision_matrix", "variance"):
        assert getattr(ours, attr).shape == getattr(ref, attr).shape, attr
        assert torch.allclose(getattr(ours, attr), getattr(ref, attr), atol=1e-5), attr
    assert torch.allclose(ours.entropy(), ref.entropy())
    q = T.MultivariateNormal(torch.zeros(3), covariance_matrix=2 * torch.eye(3))
    assert torch.allclose(kl_divergence(ours, q), kl_divergence(ref, q), atol=1e-5)
    by_cov = D.MultivariateNormal(loc, ref.covariance_matrix)  # torch's positional order
    x = torch.randn(6, 4, 3)
    assert torch.allclose(by_cov.log_prob(x), ref.log_prob(x), atol=1e-5)
    assert ours.expand((2, 4)).batch_shape == (2, 4)


BUILDERS = {
    "DiagNormal": lambda p: D.DiagNormal(p, torch.ones(3)),
    "BoxUniform": lambda p: D.BoxUniform(p - 1, p + 1),
    "MultivariateNormal": lambda p: D.MultivariateNormal(p, scale_tril=torch.eye(3) * 2),
    "Mixture": lambda p: D.Mixture(D.MultivariateNormal(torch.stack([p, -p]), scale_tril=torch.eye(3)), p[:2]),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_vmapped_builder_returns_a_batched_distribution_of_the_same_class(name):
    P = torch.randn(5, 3)
    d = vmap(BUILDERS[name])(P)
    one = BUILDERS[name](P[0])
    assert type(d) is type(one) and d.batch_shape == (5, *one.batch_shape) and d.event_shape == one.event_shape
    x = d.sample((7,))
    assert x.shape == (7, 5, 3)
    lp = d.log_prob(x)
    assert torch.allclose(lp[:, 0], one.log_prob(x[:, 0]), atol=1e-5)
    if d.has_rsample:
        assert d.rsample().shape == (5, 3)
    if isinstance(d, T.Independent):
        assert d.base_dist.batch_shape == (5, 3)
    if isinstance(d, T.MultivariateNormal):
        assert d.covariance_matrix.shape == (5, 3, 3)


def test_adapter_namespaces_hold_zukos_names():
    for ours, ref in ((Z.distributions, zuko.distributions), (Z.mixtures, zuko.mixtures)):
        names = lambda m: {n for n in dir(m) if not n.startswith("_")}  # noqa: E731
        assert names(ours) == names(ref), (names(ref) - names(ours), names(ours) - names(ref))
        assert ours.__all__ == ref.__all__
    assert Z.distributions.Independent is T.Independent and Z.mixtures.MultivariateNormal is T.MultivariateNormal


def test_normalizing_flow_with_a_plain_torch_transform():
    d, ref = D.NormalizingFlow(ExpTransform(), Gamma(2.0, 1.0)), zuko.distributions.NormalizingFlow(
        ExpTransform(), Gamma(2.0, 1.0))
    x = torch.rand(10) * 3
    assert torch.allclose(d.log_prob(x), ref.log_prob(x)) and d.reinterpreted == ref.reinterpreted == 0


@pytest.fixture
def conditional():
    spec = L.flows.MAF(3, 2)
    return spec, spec.init(torch.Generator().manual_seed(0))


def test_flow_log_prob_rejects_a_wrong_event_size(conditional):
    spec, params = conditional
    d = spec.apply(params, torch.randn(8, 2))
    with pytest.raises(ValueError, match=r"x should have shape \(\*, 3\) \(event shape \(3,\)\), got \(8, 4\)"):
        d.log_prob(torch.randn(8, 4))


def test_flow_log_prob_rejects_a_batch_that_does_not_broadcast(conditional):
    spec, params = conditional
    d = spec.apply(params, torch.randn(8, 2))
    with pytest.raises(ValueError, match=r"batch shape \(5,\) .* does not broadcast with the distribution's "
                                         r"batch shape \(8,\)"):
        d.log_prob(torch.randn(5, 3))


@pytest.mark.parametrize("flow", ["MAF", "RealNVP", "NICE"])
def test_flow_log_prob_broadcasts_one_x_over_a_batch_of_contexts(flow):
    spec = getattr(L.flows, flow)(3, 2)
    params = spec.init(torch.Generator().manual_seed(0))
    C, x = torch.randn(8, 2), torch.randn(3)
    lp = spec.apply(params, C).log_prob(x)
    assert lp.shape == (8,)
    assert torch.allclose(lp, torch.stack([spec.apply(params, c).log_prob(x) for c in C]), atol=1e-5)


def _elementwise_float32(lib):
    r"""Float32 distributions whose ``log_prob`` is element-wise math, built alike in both libraries."""

    d, t = lib.distributions, lib.transforms
    loc, scale = torch.randn(3), torch.rand(3) + 0.5
    return {
        "DiagNormal": d.DiagNormal(loc, scale),
        "Joint": d.Joint(Normal(0.0, 1.0), d.DiagNormal(loc[:2], scale[:2])),
        "Mixture": d.Mixture(d.DiagNormal(torch.stack([loc, -loc]), torch.stack([scale, scale])), torch.tensor([0.3, -0.2])),
        "NormalizingFlow": d.NormalizingFlow(t.MonotonicAffineTransform(loc, scale.log()), d.DiagNormal(loc, scale)),
    }


@pytest.mark.parametrize("name", ["DiagNormal", "Joint", "Mixture", "NormalizingFlow"])
def test_float64_value_promotes_as_in_zuko(name):
    # float64 data into float32 distributions: torch's promotion in Zuko, the same value here
    torch.manual_seed(0)
    ref = _elementwise_float32(zuko)[name]
    torch.manual_seed(0)
    ours = _elementwise_float32(Z)[name]
    x = torch.randn(5, 3, dtype=torch.float64)
    expected, got = ref.log_prob(x), ours.log_prob(x)
    assert got.dtype == expected.dtype == torch.float64
    assert torch.allclose(got, expected, rtol=1e-6)


def test_float64_value_into_a_float32_network_still_raises():
    flow = Z.flows.MAF(3, 0)()
    with pytest.raises(TypeError, match="has dtype torch.float64 but the parameters have dtype torch.float32"):
        flow.log_prob(torch.randn(5, 3, dtype=torch.float64))
