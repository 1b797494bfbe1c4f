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


@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("kw", CONFIGS, ids=["full", "diagonal", "spherical", "tied"])
def test_gmm_zuko_checkpoint_parity(kw, context):
    ref = zuko.flows.GMM(3, context, components=4, **kw)
    ours = Z.flows.GMM(3, context, components=4, **kw)
    assert sorted(ref.state_dict()) == sorted(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    c = torch.randn(6, context) if context else None
    x = torch.randn(6, 3)
    assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-5)


def test_multivariate_normal_matches_torch():
    L_ = torch.tril(torch.randn(4, 3, 3)) + 3 * torch.eye(3)
    loc, x = torch.randn(4, 3), torch.randn(5, 4, 3)
    ref = torch.distributions.MultivariateNormal(loc, scale_tril=L_)
    assert torch.allclose(MultivariateNormal(loc, L_).log_prob(x), ref.log_prob(x), atol=1e-5)


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
