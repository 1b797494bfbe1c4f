r"""Sylvester flows (van den Berg et al., 2018), orthogonal, Householder and triangular:
exact inverses, log-determinants against ``jacrev``, the constraint, ``vmap``, ``compile``,
the adapter."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, vmap

from lazydist_functional import flows, init_stacked, tree_unstack
from lazydist_functional.adapters import flows as zflows
from lazydist_functional.flows.common import FlowConfigError
from lazydist_functional.flows.sylvester import householder_product, orthonormal_columns
from lazydist_functional.transforms import SylvesterTransform
from lazydist_functional.transforms.sylvester import triangular

VARIANTS = [dict(variant="orthogonal"), dict(variant="orthogonal", units=2), dict(variant="householder"),
            dict(variant="householder", reflections=2), dict(variant="triangular")]
IDS = ["O", "O-M2", "H", "H-K2", "T"]
TOL = {torch.float64: 1e-5, torch.float32: 1e-4}


def _flow(context, dtype, seed=0, **kwargs):
    spec = flows.Sylvester(3, context, transforms=3, hidden_features=[16], init_scale=1.0, **kwargs)
    params = spec.init(torch.Generator().manual_seed(seed), dtype=dtype)
    c = torch.randn(64, context, dtype=dtype, generator=torch.Generator().manual_seed(1)) if context else None
    return spec, params, c


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("context", [0, 2])
@pytest.mark.parametrize("kwargs", VARIANTS, ids=IDS)
def test_round_trip_and_sampling(kwargs, context, dtype):
    spec, params, c = _flow(context, dtype, **kwargs)
    d = spec.apply(params, c)
    x = 2 * torch.randn(64, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    assert (d.transform.inv(d.transform(x)) - x).abs().max() <= TOL[dtype]
    y, log_p = d.rsample_and_log_prob((5,))
    torch.testing.assert_close(log_p, d.log_prob(y), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("kwargs", VARIANTS, ids=IDS)
def test_log_det_matches_jacrev(kwargs):
    spec = flows.SylvesterTransform(4, **kwargs, init_scale=1.5)
    t = spec.apply(spec.init(torch.Generator().manual_seed(0), dtype=torch.float64))
    x = torch.randn(10, 4, dtype=torch.float64)
    y, ladj = t.call_and_ladj(x)
    torch.testing.assert_close(ladj, torch.linalg.slogdet(vmap(jacrev(t._call))(x))[1], atol=1e-10, rtol=1e-8)
    x_back, ladj_inv = t.inverse_and_ladj(y)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ladj_inv, torch.linalg.slogdet(vmap(jacrev(t.inv._call))(y))[1], atol=1e-8, rtol=1e-8)


def test_q_has_orthonormal_columns():
    a = torch.randn(2, 5, 3, dtype=torch.float64)
    q = orthonormal_columns(a)
    torch.testing.assert_close(q.mT @ q, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    h = householder_product(torch.randn(2, 3, 5, dtype=torch.float64))
    torch.testing.assert_close(h.mT @ h, torch.eye(5, dtype=torch.float64).expand(2, 5, 5))


def test_constraint_holds_for_adversarial_parameters():
    raw = torch.tensor([[-1e4, 3.0], [0.0, 1e4]], dtype=torch.float64)
    r, rt = triangular(raw), triangular(-raw)
    assert (torch.diagonal(r) * torch.diagonal(rt) >= -1).all() and r[1, 0] == 0
    q = orthonormal_columns(torch.randn(3, 2, dtype=torch.float64))
    t = SylvesterTransform(q, 0.8 * raw / raw.abs().max() * 5, -raw / raw.abs().max() * 5, torch.zeros(2, dtype=torch.float64))
    x = torch.randn(100, 3, dtype=torch.float64)
    y, ladj = t.call_and_ladj(x)
    assert torch.isfinite(ladj).all()
    assert (t.inv(y) - x).abs().max() < 1e-5


def test_bad_configuration_is_named():
    with pytest.raises(FlowConfigError, match="'variant' should be one of"):
        flows.Sylvester(3, variant="diagonal")
    with pytest.raises(FlowConfigError, match="'units' should be between 1 and features=3"):
        flows.Sylvester(3, units=4)


@pytest.mark.parametrize("kwargs", VARIANTS[::2], ids=IDS[::2])
def test_vmap_over_stacked_params(kwargs):
    spec, _, c = _flow(2, torch.float32, **kwargs)
    x = torch.randn(64, 3)
    stacked = init_stacked(spec, 3, seed=4)
    mapped = vmap(lambda p: spec.apply(p, c).log_prob(x))(stacked)
    looped = torch.stack([spec.apply(p, c).log_prob(x) for p in tree_unstack(stacked)])
    torch.testing.assert_close(mapped, looped, atol=1e-5, rtol=1e-5)
    inv = vmap(lambda p: spec.apply(p, c).transform.inv(x))(stacked)
    torch.testing.assert_close(inv, torch.stack([spec.apply(p, c).transform.inv(x) for p in tree_unstack(stacked)]),
                               atol=1e-5, rtol=1e-5)


def test_compiled_log_prob_and_inverse_equal_eager():
    torch._dynamo.reset()  # one small case: the catalogue's compile tests cover the default flow
    spec = flows.Sylvester(3, 2, transforms=1, hidden_features=[16], iterations=4, variant="householder")
    params, c = spec.init(torch.Generator().manual_seed(0)), torch.randn(64, 2)
    x = torch.randn(64, 3)
    f = torch.compile(lambda p, c, x: spec.apply(p, c).log_prob(x), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(f(params, c, x), spec.apply(params, c).log_prob(x), atol=1e-5, rtol=1e-5)
    g = torch.compile(lambda p, c, z: spec.apply(p, c).transform.inv(z), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(g(params, c, x), spec.apply(params, c).transform.inv(x), atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()


def test_adapter_module_and_state_dict_round_trip():
    module = zflows.Sylvester(3, 2, transforms=2, variant="householder")
    assert isinstance(module.spec, flows.Sylvester) and module.spec.variant == "householder"
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    params = dict(module.named_parameters())
    torch.testing.assert_close(module(c).log_prob(x), module.spec.apply(params, c).log_prob(x))
    other = zflows.Sylvester(3, 2, transforms=2, variant="householder")
    other.load_state_dict(module.state_dict())
    torch.testing.assert_close(other(c).log_prob(x), module(c).log_prob(x))
