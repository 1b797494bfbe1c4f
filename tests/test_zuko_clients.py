r"""Patterns of code written for Zuko (scripts and libraries built on it, e.g. sbi's flow
builders), run with ``zuko`` swapped for the adapter, against real Zuko as the oracle."""

from __future__ import annotations

import io

import pytest
import torch
import zuko
from torch.distributions import AffineTransform, ExpTransform

import lazydist_functional.adapters as ours


def _standardized_nsf(z):
    r"""sbi-style: a z-scoring torch ``AffineTransform`` prepended to an NSF's transforms."""

    nsf = z.flows.NSF(3, 2, hidden_features=[16, 16], bins=4)
    std = z.flows.UnconditionalTransform(
        AffineTransform, loc=torch.full((3,), -0.5), scale=torch.full((3,), 0.5), event_dim=1, buffer=True
    )
    return z.flows.Flow((std, *nsf.transform.transforms), nsf.base)


def test_flow_rebuilt_from_another_flows_transforms_with_a_torch_transform_matches_zuko():
    theirs, mine = _standardized_nsf(zuko), _standardized_nsf(ours)
    assert sorted(mine.state_dict()) == sorted(theirs.state_dict())
    mine.load_state_dict(theirs.state_dict())
    c, x = torch.randn(10, 2), torch.randn(10, 3)
    torch.testing.assert_close(mine(c).log_prob(x), theirs(c).log_prob(x), atol=1e-5, rtol=1e-5)
    sample, log_p = mine(c).rsample_and_log_prob((4,))
    assert sample.shape == (4, 10, 3)
    torch.testing.assert_close(mine(c).log_prob(sample), log_p, atol=1e-4, rtol=1e-4)


def test_a_users_own_lazy_transform_inside_a_flow_trains():
    class Shift(ours.lazy.LazyTransform):
        def __init__(self) -> None:
            super().__init__()
            self.shift = torch.nn.Parameter(torch.ones(3))

        def forward(self, c=None):
            return ours.transforms.MonotonicAffineTransform(self.shift, torch.zeros(3))

    flow = ours.flows.Flow([Shift(), ours.flows.MaskedAutoregressiveTransform(3, 2)], ours.flows.MAF(3).base)
    c, x = torch.randn(10, 2), torch.randn(10, 3)
    flow(c).log_prob(x).mean().backward()
    assert flow.transform.transforms[0].shift.grad is not None
    assert flow(c).sample((2,)).shape == (2, 10, 3)


def test_torch_transform_inside_normalizing_flow_matches_zuko():
    base = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)
    x = torch.rand(5, 2) + 0.1
    mine = ours.distributions.NormalizingFlow(ExpTransform(), base).log_prob(x)
    theirs = zuko.distributions.NormalizingFlow(ExpTransform(), base).log_prob(x)
    torch.testing.assert_close(mine, theirs)


def test_lazy_inverse_and_replaced_child():
    t = ours.flows.MaskedAutoregressiveTransform(3, 2)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    torch.testing.assert_close(t.inv(c)(t(c)(x)), x, atol=1e-5, rtol=1e-5)
    flow = ours.flows.MAF(3, 2)
    spec = flow.spec
    flow.transform.transforms[1] = ours.flows.MaskedAutoregressiveTransform(3, 2)  # the user replaces a child
    assert flow.spec is not spec and flow.spec.transform.transforms[1] is flow.transform.transforms[1].spec
    assert flow(c).log_prob(x).shape == (4,)


@pytest.mark.parametrize("name", ["MAF", "NSF", "NAF"])
def test_whole_module_pickles_like_zukos(name):
    flow = getattr(ours.flows, name)(3, 2, hidden_features=[8])
    buffer = io.BytesIO()
    torch.save(flow, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    torch.testing.assert_close(loaded(c).log_prob(x), flow(c).log_prob(x))
    assert type(loaded.spec) is type(flow.spec)


def test_children_replaced_or_appended_through_module_lists_are_seen():
    flow = ours.flows.MAF(3, 2)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    flow(c).log_prob(x)  # caches built
    spare = ours.flows.MaskedAutoregressiveTransform(3, 2)  # built before, assigned after the caches
    flow(c).log_prob(x)
    flow.transform.transforms[0] = spare
    assert flow.spec.transform.transforms[0] is spare.spec
    extra = ours.flows.MaskedAutoregressiveTransform(3, 2)
    flow(c).log_prob(x)
    flow.transform.transforms.append(extra)
    assert len(flow.spec.transform.transforms) == 4
    expected = flow.forward_children(c).log_prob(x)  # Zuko's way: call the children
    torch.testing.assert_close(flow(c).log_prob(x), expected)


NETWORKS = {"hyper", "network", "integrand", "ode"}


@pytest.mark.parametrize("name", ["MAF", "NSF", "NCSF", "RealNVP", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF", "GMM"])
def test_modules_have_the_attributes_of_zukos_modules(name):
    r"""Every instance attribute of every Zuko module exists on ours at the same path
    (networks' internal layers aside: ours are parameter containers, see the README)."""

    theirs, mine = getattr(zuko.flows, name)(3, 2), getattr(ours.flows, name)(3, 2)
    our_modules = dict(mine.named_modules())
    for path, module in theirs.named_modules():
        parts = set(path.split("."))
        if isinstance(module, (zuko.nn.MLP, zuko.nn.MaskedMLP, zuko.nn.MonotonicMLP)) or (
            parts & NETWORKS and not isinstance(module, torch.nn.Linear)
        ):
            continue
        assert path in our_modules, path
        if isinstance(module, torch.nn.Linear):
            assert (our_modules[path].in_features, our_modules[path].out_features) == (
                module.in_features, module.out_features), path
            continue
        for attr in vars(module):
            if not attr.startswith("_") and attr != "training":
                assert hasattr(our_modules[path], attr), f"{name}: {path or 'flow'}.{attr}"


def test_network_layers_index_like_zukos_sequentials():
    theirs, mine = zuko.flows.MAF(3, 2), ours.flows.MAF(3, 2)
    for i in (0, 2, -1):
        a, b = theirs.transform.transforms[0].hyper[i], mine.transform.transforms[0].hyper[i]
        assert (b.in_features, b.out_features) == (a.in_features, a.out_features)
        assert b.weight.shape == a.weight.shape
    a, b = theirs.transform.transforms[0].hyper, mine.transform.transforms[0].hyper
    assert [type(m).__name__ for m in b] == [type(m).__name__ for m in a]  # the same layers, activations included
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 5)
    assert torch.allclose(b(x), a(x), atol=1e-6) and torch.allclose(b[1](b[0](x)), a[1](a[0](x)), atol=1e-6)
