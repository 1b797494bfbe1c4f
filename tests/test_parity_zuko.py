r"""Parity with Zuko 1.6: a Zuko checkpoint loads into the adapter flow of the same
configuration (``load_state_dict`` or ``from_zuko``) and gives the same numbers."""

from __future__ import annotations

import pytest
import torch
import zuko

import lazydist_functional.adapters as A

from conftest import FEATURES, HIDDEN, assert_close

CONFIGS = [
    ("MAF", 0, {}),
    ("MAF", 2, {}),
    ("MAF", 2, {"randperm": True}),
    ("MAF", 2, {"passes": 2}),
    ("NSF", 0, {"bins": 4}),
    ("NSF", 2, {"bins": 4}),
    ("NSF", 2, {"bins": 4, "passes": 2, "randperm": True}),
    ("RealNVP", 0, {}),
    ("RealNVP", 2, {"randmask": True}),
    ("NICE", 0, {}),
    ("NICE", 2, {"randmask": True}),
]
IDS = [f"{n}-c{c}-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "default") for n, c, kw in CONFIGS]


def _pair(name: str, context: int, kwargs: dict, seed: int = 0):
    torch.manual_seed(seed)
    z = getattr(zuko.flows, name)(FEATURES, context, hidden_features=HIDDEN, **kwargs)
    # perturb Zuko's weights away from its init, so a silently ignored checkpoint cannot pass
    with torch.no_grad():
        for p in z.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.manual_seed(seed + 1)  # a different draw for our random orders/masks
    ours = getattr(A.flows, name)(FEATURES, context, hidden_features=HIDDEN, **kwargs)
    return z, ours


def _inputs(context: int, n: int = 16):
    c = torch.randn(n, context) if context else None
    return c, 1.5 * torch.randn(n, FEATURES)


def _compare(z, ours, context):
    c, x = _inputs(context)
    dz, do = z(c), ours(c)
    with torch.no_grad():
        assert_close(do.log_prob(x), dz.log_prob(x), atol=1e-5, what="log_prob")
        yz, ladj_z = dz.transform.call_and_ladj(x)
        yo, ladj_o = do.transform.call_and_ladj(x)
        assert_close(yo, yz, atol=1e-5, what="transform")
        assert_close(ladj_o, ladj_z, atol=1e-5, what="ladj")
        assert_close(do.transform.inv(yz), dz.transform.inv(yz), atol=1e-5, what="inverse")
        assert_close(do.transform.inv(yz), x, atol=1e-4, what="round trip")
    return c, x


@pytest.mark.parametrize(("name", "context", "kwargs"), CONFIGS, ids=IDS)
def test_zuko_state_dict_loads_and_matches(name, context, kwargs):
    z, ours = _pair(name, context, kwargs)
    assert sorted(ours.state_dict()) == sorted(z.state_dict())
    c, x = _inputs(context)
    before = ours(c).log_prob(x)
    assert not torch.allclose(before, z(c).log_prob(x), atol=1e-3)  # they differ before loading
    ours.load_state_dict(z.state_dict())  # strict
    _compare(z, ours, context)
    # parameters and buffers (orders, masks) were all taken over
    zs = z.state_dict()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, zs[key]), key


@pytest.mark.parametrize(("name", "context", "kwargs"), CONFIGS, ids=IDS)
def test_from_zuko_matches(name, context, kwargs):
    z, _ = _pair(name, context, kwargs)
    ours = A.from_zuko(z)
    assert type(ours) is getattr(A.flows, name)  # the flow's own class, not a generic Flow
    _compare(z, ours, context)
    # the converted module is a full adapter: functional path and gradients work
    apply_fn, params = A.to_functional(ours)
    c, x = _inputs(context)
    assert_close(apply_fn(params, c).log_prob(x), z(c).log_prob(x).detach(), atol=1e-5, what="to_functional")


def test_zuko_loads_our_checkpoint_back():
    torch.manual_seed(3)
    ours = A.flows.NSF(FEATURES, 2, bins=4, hidden_features=HIDDEN, randperm=True)
    z = zuko.flows.NSF(FEATURES, 2, bins=4, hidden_features=HIDDEN, randperm=True)
    z.load_state_dict(ours.state_dict())
    _compare(z, ours, 2)


def test_same_seed_same_samples_as_zuko():
    z, ours = _pair("MAF", 2, {})
    ours.load_state_dict(z.state_dict())
    c = torch.randn(6, 2)
    torch.manual_seed(11)
    sz = z(c).sample((4,))
    torch.manual_seed(11)
    so = ours(c).sample((4,))
    assert_close(so, sz, atol=1e-4, what="samples")


@pytest.mark.parametrize("name", ["MAF", "NSF", "NICE"])
@pytest.mark.parametrize("context", [0, 2])
def test_single_feature_flows_fall_back_to_element_wise_like_zuko(name, context):
    import lazydist_functional.adapters as adapters

    ref = getattr(zuko.flows, name)(1, context)
    ours = getattr(adapters.flows, name)(1, context)
    assert type(ours.transform.transforms[0]).__name__ == "ElementWiseTransform"
    assert sorted(ref.state_dict()) == sorted(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    c = torch.randn(7, context) if context else None
    x = torch.randn(7, 1)
    assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-5)
    d = ours(c)
    assert torch.allclose(d.transform.inv(d.transform(x)), x, atol=1e-4)
