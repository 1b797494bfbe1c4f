r"""Batch normalization between flow layers: the transform's modes, the functional
``apply(train=True) -> (distribution, update)``, per-member statistics under ``vmap``, the
adapter's ``train()`` / ``eval()`` semantics (as ``nn.BatchNorm1d``), ``state_dict``."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, vmap

from lazydist_functional import flows, init_stacked, tree_stack
from lazydist_functional.adapters import flows as zflows
from lazydist_functional.adapters import to_module
from lazydist_functional.checks import ShapeError
from lazydist_functional.pytree import flatten_names
from lazydist_functional.transforms import BatchNormTransform

D = 3


def _bn(mode="eval", dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return BatchNormTransform(0.3 * torch.randn(D, generator=g, dtype=dtype), torch.randn(D, generator=g, dtype=dtype),
                              torch.randn(D, generator=g, dtype=dtype), 0.5 + torch.rand(D, generator=g, dtype=dtype),
                              mode=mode)


def test_eval_mode_is_an_exact_affine_bijection():
    t = _bn("eval")
    x = torch.randn(10, D, dtype=torch.float64)
    y, ladj = t.call_and_ladj(x)
    torch.testing.assert_close(ladj, torch.linalg.slogdet(vmap(jacrev(t._call))(x))[1])
    x_back, ladj_inv = t.inverse_and_ladj(y)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(ladj_inv, -ladj)


def test_train_mode_uses_the_batch_statistics_and_the_inverse_the_running_ones():
    t = _bn("train")
    x = 4 + 3 * torch.randn(500, D, dtype=torch.float64)
    y, ladj = t.call_and_ladj(x)
    z = (y - t.beta) * torch.exp(-t.log_gamma)  # the normalized batch
    torch.testing.assert_close(z.mean(0), torch.zeros(D, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(D, dtype=torch.float64), atol=1e-4, rtol=0)
    # The log-det is that of the map with the batch statistics held fixed (the MAF paper's).
    mean, var = x.mean(0), x.var(0, unbiased=False)
    fixed = BatchNormTransform(t.log_gamma, t.beta, mean, var, mode="eval")
    torch.testing.assert_close(ladj, torch.linalg.slogdet(vmap(jacrev(fixed._call))(x[:5]))[1].mean().expand(500))
    torch.testing.assert_close(t.inv(y[:5]), _bn("eval").inv(y[:5]))  # inverse: running statistics
    with pytest.raises(ShapeError, match="more than one sample"):
        t(x[:1])


def test_functional_train_returns_the_new_state_and_mutates_nothing():
    spec = flows.MAF(D, transforms=2, batch_norm=True, hidden_features=[8])
    params, state = spec.init(), spec.init_state()
    before = {k: v.clone() for k, v in flatten_names(state).items()}
    x = 2 + torch.randn(256, D)
    d, update = spec.apply(params, state=state, train=True)
    lp = d.log_prob(x)
    new = update(x)
    for k, v in flatten_names(state).items():
        assert torch.equal(v, before[k]), k  # nothing mutated
    h = spec.apply(params, state=state).transform.transforms[0](x)  # the input of the batch-norm layer
    flat = flatten_names(new)
    torch.testing.assert_close(flat["transform.transforms.1.running_mean"], 0.1 * h.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(flat["transform.transforms.1.running_var"], 0.9 + 0.1 * h.var(0), atol=1e-6, rtol=1e-5)
    assert flat["transform.transforms.0.order"] is flatten_names(state)["transform.transforms.0.order"]
    # Train mode normalizes with the batch's statistics: differs from eval mode on this batch.
    assert not torch.allclose(lp, spec.apply(params, state=state).log_prob(x))
    # A spec without batch statistics: train=True changes nothing.
    plain = flows.MAF(D, transforms=2, hidden_features=[8])
    p, s = plain.init(), plain.init_state()
    d2, update2 = plain.apply(p, state=s, train=True)
    torch.testing.assert_close(d2.log_prob(x), plain.apply(p, state=s).log_prob(x))
    assert update2(x) is not None and all(a is b for a, b in zip(flatten_names(update2(x)).values(), flatten_names(s).values()))


@pytest.mark.parametrize("name", ["MAF", "NSF", "RealNVP"])
def test_batch_norm_option_inserts_layers_between_layers(name):
    spec = getattr(flows, name)(D, 2, transforms=3, batch_norm=True, hidden_features=[8])
    kinds = [type(t).__name__ for t in spec.transform.transforms]
    assert kinds[1::2] == ["BatchNormTransform"] * 2 and len(kinds) == 5
    params, c, x = spec.init(), torch.randn(32, 2), torch.randn(32, D)
    d, update = spec.apply(params, c, train=True)
    assert torch.isfinite(d.log_prob(x)).all()
    d = spec.apply(params, c, state=update(x))
    assert (d.transform.inv(d.transform(x)) - x).abs().max() < 1e-4


def test_vmap_over_members_gives_per_member_statistics():
    spec = flows.MAF(D, transforms=2, batch_norm=True, hidden_features=[8])
    P = init_stacked(spec, 3, seed=0)
    S = tree_stack([spec.init_state()] * 3)
    X = torch.randn(3, 128, D) * torch.tensor([1.0, 2.0, 3.0])[:, None, None] + torch.arange(3.0)[:, None, None]

    def step(p, s, x):
        d, update = spec.apply(p, state=s, train=True)
        return -d.log_prob(x).mean(), update(x)

    losses, new = vmap(step)(P, S, X)
    key = "transform.transforms.1.running_mean"
    for i in range(3):
        p_i = {k: v[i] for k, v in flatten_names(P).items()}
        loss_i, new_i = step(p_i, spec.init_state(), X[i])
        torch.testing.assert_close(losses[i], loss_i, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(flatten_names(new)[key][i], flatten_names(new_i)[key], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(flatten_names(new)[key][0], flatten_names(new)[key][2])


def test_compiled_train_step_equals_eager():
    torch._dynamo.reset()
    spec = flows.MAF(D, transforms=2, batch_norm=True, hidden_features=[8])
    params, state, x = spec.init(), spec.init_state(), torch.randn(64, D)

    def step(p, s, x):
        d, update = spec.apply(p, state=s, train=True)
        return d.log_prob(x), update(x)

    got = torch.compile(step, fullgraph=True, backend="aot_eager")(params, state, x)
    expected = step(params, state, x)
    torch.testing.assert_close(got[0], expected[0])
    for k, v in flatten_names(expected[1]).items():
        torch.testing.assert_close(flatten_names(got[1])[k], v)
    torch._dynamo.reset()


def test_adapter_train_and_eval_match_nn_batchnorm1d():
    module = to_module(flows.BatchNormTransform(D))
    reference = torch.nn.BatchNorm1d(D, affine=False, momentum=0.1, eps=1e-5, dtype=torch.float32)
    for _ in range(3):
        x = 2 + 3 * torch.randn(64, D)
        y = module()(x)  # train mode (the default): batch statistics, buffers updated
        torch.testing.assert_close(y, reference(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(module.running_mean, reference.running_mean)
    torch.testing.assert_close(module.running_var, reference.running_var)
    module.eval(), reference.eval()
    x = torch.randn(5, D)
    before = module.running_mean.clone()
    torch.testing.assert_close(module()(x), reference(x), atol=1e-5, rtol=1e-5)
    assert torch.equal(module.running_mean, before)


def test_adapter_flow_state_dict_round_trip():
    flow = zflows.MAF(D, 2, transforms=2, batch_norm=True, hidden_features=[8])
    c, x = torch.randn(64, 2), 1 + torch.randn(64, D)
    flow(c).log_prob(x).mean().backward()  # a training step's forward updates the running statistics
    assert not torch.equal(flow.transform.transforms[1].running_var, torch.ones(D))
    flow.eval()
    other = zflows.MAF(D, 2, transforms=2, batch_norm=True, hidden_features=[8]).eval()
    other.load_state_dict(flow.state_dict())
    torch.testing.assert_close(other(c).log_prob(x), flow(c).log_prob(x))
    params, state = dict(flow.named_parameters()), dict(flow.named_buffers())
    torch.testing.assert_close(flow(c).log_prob(x), flow.spec.apply(params, c, state=state).log_prob(x))
