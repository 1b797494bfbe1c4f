r"""Bayesian flows: Zuko parity, KL closed form, K posterior samples in one vmapped call."""

from __future__ import annotations

import torch
import zuko
import zuko.bayesian

import lazydist_functional.adapters as Z
from lazydist_functional.adapters.bayesian import BayesianModel as BayesianModule
from lazydist_functional.bayesian import BayesianModel
from lazydist_functional.pytree import flatten_names


def _pair():
    torch.manual_seed(0)
    zb = zuko.bayesian.BayesianModel(zuko.flows.MAF(3, 2, hidden_features=[16]), include_params=["transform.transforms.0"])
    ob = BayesianModule(Z.flows.MAF(3, 2, hidden_features=[16]), include_params=["transform.transforms.0"])
    ob.load_state_dict(zb.state_dict())
    return zb, ob


def test_zuko_checkpoint_loads_and_kl_matches():
    zb, ob = _pair()
    assert sorted(zb.state_dict()) == sorted(ob.state_dict())
    assert torch.allclose(zb.kl_divergence(), ob.kl_divergence(), rtol=1e-6)
    # posterior mean model equals the base flow: logvar -> -inf gives the means
    with torch.no_grad():
        for p in ob.logvars.values():
            p.fill_(-60.0)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    sampled = ob.sample_params()
    for key, mean in ob.means.items():  # softclip(-60, 18) ~ -17.1: std ~ 2e-4
        assert (sampled[key.replace("-", ".")] - mean).abs().max() < 2e-3
    with ob.reparameterize() as flow:
        lp = flow(c).log_prob(x)
    assert torch.allclose(lp, zb.base(c).log_prob(x), atol=1e-2)
    # outside the context the module holds its own parameters again
    assert torch.equal(ob.base(c).log_prob(x), zb.base(c).log_prob(x))


def test_kl_closed_form():
    spec = Z.flows.MAF(2, 0, hidden_features=[4]).spec
    bayes = BayesianModel(spec)
    q = bayes.init(spec.init(torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1))
    means = torch.cat([m.flatten() for m in q["means"].values()])
    logvars = torch.cat([v.flatten() for v in q["logvars"].values()])
    logvars = logvars / torch.sqrt(1 + (logvars / 18) ** 2)  # the soft clip of the log-variance
    expected = 0.5 * (logvars.exp() / 2.0 + means**2 / 2.0 + torch.log(torch.tensor(2.0)) - logvars - 1).sum()
    assert torch.allclose(bayes.kl_divergence(q, prior_var=2.0), expected, rtol=1e-5)


def test_k_posterior_samples_in_one_vmapped_call_are_distinct_and_differentiable():
    zb, ob = _pair()
    spec = ob.base.spec
    params, _ = ob.base.trees()
    bayes = BayesianModel(spec, include_params=["transform.transforms.0"])
    assert len(bayes.names) == 4
    q = {"means": {k: v.detach().clone().requires_grad_() for k, v in ob.means.items()},
         "logvars": {k: torch.full_like(v, -2.0).requires_grad_() for k, v in ob.logvars.items()}}
    c, x = torch.randn(2), torch.randn(3)
    lp = bayes.log_prob_samples(q, params, c, x, k=8)
    assert lp.shape == (8,)
    assert lp.unique().numel() == 8  # independent weight draws
    lp.mean().backward()
    grads = [g.grad for g in q["logvars"].values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_sample_params_only_touches_included_names():
    spec = Z.flows.MAF(3, 0, hidden_features=[8]).spec
    base = spec.init(torch.Generator().manual_seed(0))
    bayes = BayesianModel(spec, exclude_params=["transform.transforms.1"])
    q = bayes.init(base)
    sampled = flatten_names(bayes.sample_params(q, base))
    flat = flatten_names(base)
    for name, value in flat.items():
        if name.startswith("transform.transforms.1"):
            assert value is sampled[name]
        else:
            assert not torch.equal(value, sampled[name]) and name in bayes.names
