r"""GMM and Mixture/MultivariateNormal: Zuko parity, torch.func, initialization."""

from __future__ import annotations

import pytest
import torch
import zuko
from torch.func import functional_call, vmap

import lazydist_functional as L
import lazydist_functional.adapters as Z
from lazydist_functional.distributions import DiagNormal, Mixture, MultivariateNormal

CONFIGS = [dict(), dict(covariance_type="diagonal"), dict(covariance_type="spherical"), dict(tied=True)]


def _zuko_pair(kw: dict, context: int, n: int = 6):
    r"""Zuko's GMM, ours with its weights, and a context of ``n`` rows (``None`` without context)."""

    ref = zuko.flows.GMM(3, context, components=4, **kw)
    ours = Z.flows.GMM(3, context, components=4, **kw)
    assert sorted(ref.state_dict()) == sorted(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    return ref, ours, (torch.randn(n, context) if context else None)


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("kw", CONFIGS, ids=["full", "diagonal", "spherical", "tied"])
def test_gmm_zuko_checkpoint_parity(kw, context):
    ref, ours, c = _zuko_pair(kw, context)
    x = torch.randn(6, 3)
    assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-5)


def test_multivariate_normal_matches_torch():
    L_ = torch.tril(torch.randn(4, 3, 3)) + 3 * torch.eye(3)
    loc, x = torch.randn(4, 3), torch.randn(5, 4, 3)
    ref = torch.distributions.MultivariateNormal(loc, scale_tril=L_)
    assert torch.allclose(MultivariateNormal(loc, scale_tril=L_).log_prob(x), ref.log_prob(x), atol=1e-5)


def test_mixture_samples_follow_the_weights():
    torch.manual_seed(0)
    d = Mixture(DiagNormal(torch.tensor([[-5.0], [5.0]]), torch.full((2, 1), 0.1)), torch.log(torch.tensor([0.2, 0.8])))
    x = d.sample((20000,))
    assert x.shape == (20000, 1)
    assert abs(float((x > 0).float().mean()) - 0.8) < 0.02
    lp = d.log_prob(torch.tensor([[5.0]]))
    expected = torch.log(torch.tensor(0.8)) + torch.distributions.Normal(5.0, 0.1).log_prob(torch.tensor(5.0))
    assert torch.allclose(lp, expected.reshape(1), atol=1e-5)


def test_gmm_torch_func_matrix():
    spec = L.flows.GMM(3, 2, components=3, hidden_features=[16])
    P = L.init_stacked(spec, 4)
    C, X = torch.randn(4, 2), torch.randn(4, 3)
    lp = vmap(lambda p, c, x: spec.apply(p, c).log_prob(x))(P, C, X)
    loop = torch.stack([spec.apply(p, C[i]).log_prob(X[i]) for i, p in enumerate(L.tree_unstack(P))])
    assert torch.allclose(lp, loop, atol=1e-5) and lp.unique().numel() == 4
    s = vmap(lambda p, c: spec.apply(p, c).sample((6,)), randomness="different")(P, C)
    assert s.shape == (4, 6, 3) and not torch.allclose(s[0], s[1])
    g = torch.func.grad(lambda p: spec.apply(p, C).log_prob(X).sum())(L.tree_unstack(P)[0])
    assert all(v.abs().sum() > 0 for v in L.flatten_names(g).values())
    module = Z.flows.GMM(3, 2, components=3, hidden_features=[16])
    other = {k: v.detach() + 0.05 for k, v in module.named_parameters()}
    got = functional_call(module, other, (C,)).log_prob(X)
    assert torch.allclose(got, spec.apply(L.unflatten_names(other), C).log_prob(X), atol=1e-5)


@pytest.mark.parametrize("strategy", ["random", "kmeans", "kmeans++"])
@pytest.mark.parametrize("kw", CONFIGS, ids=["full", "diagonal", "spherical", "tied"])
def test_gmm_initialize_fits_clusters(kw, strategy):
    torch.manual_seed(0)
    centers = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    x = (centers[:, None] + 0.3 * torch.randn(3, 200, 2)).reshape(-1, 2)
    gmm = Z.flows.GMM(2, components=3, **kw)
    before = gmm().log_prob(x).mean()
    gmm.initialize(x, strategy)
    after = gmm().log_prob(x).mean()
    assert after > before + 1.0
    if strategy == "kmeans":  # seeding + Lloyd iterations: close to the generating mixture (~ -1.7 nats)
        assert after > -2.5
    with pytest.raises(ValueError, match="more samples"):
        gmm.initialize(x[:2], strategy)


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("kw", CONFIGS, ids=["full", "diagonal", "spherical", "tied"])
def test_mixtures_module_is_a_spec_distribution_with_zuko_parity(kw, context):
    ref = zuko.mixtures.GMM(3, context, components=4, **kw)
    ours = Z.mixtures.GMM(3, context, components=4, **kw)
    assert isinstance(ours, Z.lazy.SpecDistribution) and isinstance(ours.spec, L.flows.GMM)
    ours.load_state_dict(ref.state_dict())
    c = torch.randn(6, context) if context else None
    x = torch.randn(6, 3)
    d, r = ours(c), ref(c)
    assert torch.allclose(d.log_prob(x), r.log_prob(x), atol=1e-5)
    if kw.get("covariance_type", "full") == "full":
        assert isinstance(d.base, torch.distributions.MultivariateNormal)
        assert torch.allclose(d.base.covariance_matrix, r.base.covariance_matrix, atol=1e-6)
    else:
        assert isinstance(d.base, torch.distributions.Independent)
        assert torch.allclose(d.base.base_dist.scale, r.base.base_dist.scale)


def test_unknown_options_raise_zuko_compatible_errors():
    from lazydist_functional.flows.mixture import UnknownOptionError

    for make in (L.flows.GMM, Z.mixtures.GMM):
        with pytest.raises(UnknownOptionError, match="Unknown covariance type 'cube': expected 'full', 'diagonal' or "
                                                     "'spherical'") as info:
            make(3, covariance_type="cube")
        assert isinstance(info.value, NotImplementedError) and isinstance(info.value, ValueError)
    gmm = Z.mixtures.GMM(3)
    with pytest.raises(NotImplementedError, match="Unknown clustering strategy 'median': expected 'random', "
                                                  "'kmeans' or 'kmeans\\+\\+'"):
        gmm.initialize(torch.randn(16, 3), "median")
    gmm.covariance_type = "cube"  # as in Zuko: reported when used
    with pytest.raises(ValueError, match="Unknown covariance type 'cube'"):
        gmm.initialize(torch.randn(16, 3), "random")
    with pytest.raises(ValueError, match="Unknown covariance type 'cube'"):
        gmm()


def test_too_few_samples_is_an_assertion_and_a_value_error():
    gmm = Z.mixtures.GMM(3, components=7)
    with pytest.raises(AssertionError, match=r"The number of samples \(6\) should be larger than the number of "
                                             r"components \(7\)") as info:
        gmm.initialize(torch.randn(6, 3), "random")
    assert isinstance(info.value, ValueError)


@pytest.fixture
def gmm_dist():
    return Z.mixtures.GMM(3, components=2)()


def test_gmm_log_prob_rejects_too_few_features(gmm_dist):
    with pytest.raises(ValueError, match=r"x should have shape \(\*, 3\) \(event shape \(3,\)\), got \(5, 1\)"):
        gmm_dist.log_prob(torch.randn(5, 1))


def test_gmm_log_prob_rejects_too_many_features(gmm_dist):
    with pytest.raises(ValueError, match=r"x should have shape \(\*, 3\) \(event shape \(3,\)\), got \(5, 4\)"):
        gmm_dist.log_prob(torch.randn(5, 4))


def test_gmm_log_prob_rejects_a_list(gmm_dist):
    with pytest.raises(TypeError, match="x should be a tensor, got list"):
        gmm_dist.log_prob([0.0, 0.0, 0.0])


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("kw", CONFIGS, ids=["full", "diagonal", "spherical", "tied"])
def test_gmm_log_prob_promotes_float64_data(kw, context):
    # float64 data (torch.tensor(numpy_array)) into a float32 GMM: Zuko's torch-based GMM
    # takes it; the value is the float64 flow's, to float32 rounding, and gradients flow
    ref, ours, c = _zuko_pair(kw, context)
    x = torch.randn(6, 3, dtype=torch.float64)
    lp = ours(c).log_prob(x)
    assert lp.dtype == torch.float64
    wide = Z.flows.GMM(3, context, components=4, **kw).double()
    wide.load_state_dict(ref.state_dict())
    assert torch.allclose(lp, wide(None if c is None else c.double()).log_prob(x), rtol=1e-5)
    assert torch.allclose(lp.float(), ref(c).log_prob(x).float(), rtol=1e-5)
    lp.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())
    # the pure path under vmap over the rows, and functional_call, give the same float64 values
    params = {k: v.detach() for k, v in ours.named_parameters()}
    per_row = vmap(lambda *ab: functional_call(ours, params, ab[:-1]).log_prob(ab[-1]))(*([c] if c is not None else []), x)
    torch.testing.assert_close(per_row, lp.detach())


def test_gmm_log_prob_rejects_a_batch_that_does_not_broadcast():
    d = Z.mixtures.GMM(3, 2, components=2)(torch.randn(8, 2))
    with pytest.raises(ValueError, match=r"batch shape \(5,\) .*does not broadcast with the distribution's batch "
                                         r"shape \(8,\)"):
        d.log_prob(torch.randn(5, 3))


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("kw", CONFIGS, ids=["full", "diagonal", "spherical", "tied"])
def test_gmm_samples_are_zukos_for_a_seed(kw, context):
    # Eager sampling draws the components, then the index by torch.multinomial, as Zuko does.
    ref, ours, c = _zuko_pair(kw, context, n=5)
    for shape in [(), (7,), (2, 3)]:
        torch.manual_seed(11)
        want = ref(c).sample(shape)
        torch.manual_seed(11)
        assert torch.equal(ours(c).sample(shape), want)


def test_mixture_component_frequencies_agree_on_every_sampling_path():
    # multinomial (eager), Gumbel-max (vmap, compile, keys): one distribution.
    means = torch.tensor([[-10.0], [0.0], [10.0]])
    d = Mixture(DiagNormal(means, torch.ones(3, 1)), torch.log(torch.tensor([0.2, 0.5, 0.3])))
    want = torch.tensor([0.2, 0.5, 0.3])

    def freq(x):
        k = torch.bucketize(x.reshape(-1), torch.tensor([-5.0, 5.0]))
        return torch.bincount(k, minlength=3) / k.numel()

    torch.manual_seed(0)
    draws = {
        "eager": d.sample((20000,)),
        "vmap": vmap(lambda _: d.sample((10,)), randomness="different")(torch.zeros(2000)),
        "compile": torch.compile(lambda: d.sample((20000,)), backend="aot_eager")(),
        "key": d.sample((20000,), key=L.random.key(3)),
    }
    for name, x in draws.items():
        assert torch.allclose(freq(x), want, atol=0.015), name
