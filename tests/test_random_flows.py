r"""The key contract for the 12 catalogue flows, the adapter and the recipes: the same key
gives the same samples batched, one member at a time (member ``b`` with
``split(key, B)[b]``), under ``vmap`` over contexts or stacked parameters, chunked, and
compiled. The base noise is bitwise equal in every mode; the samples are bitwise equal
wherever the transform computes a batch as it computes its members (``vmap`` runs the
batched kernels), else to the transform's float rounding (matrix products of different
batch sizes round differently)."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

import lazydist_functional.adapters.flows as zflows
from lazydist_functional import init_stacked, meta, random, tree_unstack
from lazydist_functional.bayesian import BayesianModel
from lazydist_functional.catalogue import FLOWS, make_spec
from lazydist_functional.flows import MAF

NAMES = sorted(FLOWS)
B, S = 3, (4,)
KEY = random.key(0)
# transforms whose inverse is not bitwise batch-invariant in float32: a loose bound (NAF's
# inverse is a fixed number of Newton steps on a random, untrained network)
TOL = {"NAF": 0.1, "UNAF": 1e-3, "GF": 1e-3}


def _setup(name):
    spec = make_spec(name, 3, 2)
    params = spec.init(torch.Generator().manual_seed(0))
    c = torch.randn(B, 2, generator=torch.Generator().manual_seed(1))
    return spec, params, c


def _close(name, a, b):
    tol = TOL.get(name, 1e-4)
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_samples_in_every_mode(name):
    spec, params, c = _setup(name)
    keys = random.split(KEY, B)
    d = spec.apply(params, c)
    x = d.sample(S, key=KEY)
    assert x.shape == (*S, B, 3) and torch.equal(x, d.sample(S, key=KEY))
    assert not torch.equal(x, d.sample(S, key=random.key(1)))
    one = [spec.apply(params, c[b]) for b in range(B)]

    def draw(ci, k):
        return spec.apply(params, ci).sample(S, key=k)

    if name != "GMM":  # a flow: its base draws with the key, bitwise in every mode
        z = d.base.sample(S, key=KEY)
        assert torch.equal(x, d.transform.inv(z))
        for b in range(B):
            assert torch.equal(z[:, b], one[b].base.sample(S, key=keys[b]))
        base = vmap(lambda ci, k: spec.apply(params, ci).base.sample(S, key=k), out_dims=1)(c, keys)
        assert torch.equal(base, z)
    looped = torch.stack([one[b].sample(S, key=keys[b]) for b in range(B)], dim=1)
    mapped = vmap(draw, out_dims=1)(c, keys)
    chunked = vmap(draw, out_dims=1, chunk_size=1)(c, keys)
    for other in (looped, mapped, chunked):
        _close(name, other, x)
    if name not in TOL:
        assert torch.equal(mapped, x)


@pytest.mark.parametrize("name", ["MAF", "NCSF", "GMM"])  # the three kinds of base; compiling is slow
def test_compiled_equals_eager(name):
    spec, params, c = _setup(name)
    f = torch.compile(lambda ci, k: spec.apply(params, ci).sample(S, key=k), backend="aot_eager", fullgraph=True)
    assert torch.equal(f(c, KEY), spec.apply(params, c).sample(S, key=KEY))


@pytest.mark.parametrize("name", NAMES)
def test_stacked_params_and_gradients(name):
    spec, _, c = _setup(name)
    stacked = init_stacked(spec, 2, seed=3)
    keys = random.split(KEY, 2)
    mapped = vmap(lambda p, k: spec.apply(p, c).sample(S, key=k))(stacked, keys)
    looped = torch.stack([spec.apply(p, c).sample(S, key=k) for p, k in zip(tree_unstack(stacked), keys)])
    _close(name, mapped, looped)
    # common random numbers: one key for every member
    same = vmap(lambda p: spec.apply(p, c).base.sample(S, key=KEY) if name != "GMM" else torch.zeros(1))(stacked)
    assert torch.equal(same[0], same[1])
    if name in ("GMM",):
        return
    params = tree_unstack(stacked)[0]
    g = grad(lambda p: spec.apply(p, c).rsample(S, key=KEY).square().mean())(params)
    assert any(t.abs().sum() > 0 for t in torch.utils._pytree.tree_leaves(g))
    x, lp = spec.apply(params, c).rsample_and_log_prob(S, key=KEY)
    assert torch.equal(x, spec.apply(params, c).rsample(S, key=KEY))
    if name != "NAF":  # NAF's numerical inverse of an untrained network does not converge here
        _close(name, lp, spec.apply(params, c).log_prob(x))


def test_the_adapter_flows_take_keys():
    flow = zflows.NSF(3, 2, hidden_features=[16])
    c = torch.randn(B, 2)
    x = flow(c).sample((5,), key=KEY)
    assert torch.equal(x, flow(c).sample((5,), key=KEY))
    params = {k: v.detach() + 0 for k, v in flow.named_parameters()}
    assert torch.equal(x, torch.func.functional_call(flow, params, (c,)).sample((5,), key=KEY))
    torch.manual_seed(0)
    a = flow(c).sample((5,))
    torch.manual_seed(0)
    assert torch.equal(a, flow(c).sample((5,)))  # without a key: torch's generator, unchanged


def test_recipes_take_keys():
    spec = MAF(2, 0, hidden_features=[8])
    params = spec.init(torch.Generator().manual_seed(0))
    sx = torch.randn(3, 8, 2)

    def inner(p, c, x, k):  # a stochastic loss: Monte Carlo reverse KL to the data's mean
        d = spec.apply(p, c)
        y, lp = d.rsample_and_log_prob((16,), key=k)
        return lp.mean() + (y - x.mean(0)).square().mean()

    loss = meta.maml_loss(spec, params, None, sx, None, sx, inner_loss=inner, key=KEY)
    keys = random.split(KEY, 3)
    per_task = [
        meta.nll(spec, meta.adapt(spec, params, None, sx[t], loss=inner, key=keys[t]), None, sx[t]) for t in range(3)
    ]
    torch.testing.assert_close(loss, torch.stack(per_task).mean())
    assert loss != meta.maml_loss(spec, params, None, sx, None, sx, inner_loss=inner, key=random.key(1))
    bayes = BayesianModel(spec, init_logvar=-4.0)
    q = bayes.init(params)
    x = torch.randn(5, 2)
    lp = bayes.log_prob_samples(q, params, None, x, k=4, key=KEY)
    k2 = random.split(KEY, 4)[2]
    torch.testing.assert_close(lp[2], bayes.apply(q, params, None, key=k2).log_prob(x))
    assert torch.equal(lp, bayes.log_prob_samples(q, params, None, x, k=4, key=KEY))
    assert not torch.equal(lp[0], lp[1])
