r"""The adapter: functional_call binds params eagerly (unlike Zuko), names, state_dict
round trips (random orders/masks included), torch.save, to_functional both ways."""

from __future__ import annotations

import pytest
import torch
import zuko
from torch.func import functional_call, grad, vmap

import lazydist_functional as L
import lazydist_functional.adapters as A
from lazydist_functional.distributions import DiagNormal, NormalizingFlow
from lazydist_functional.pytree import flatten_names, unflatten_names

from adapter_cases import make_module, module_of
from conftest import FEATURES, HIDDEN, Case, assert_close, rows_distinct


def _other_params(case: Case, module) -> dict[str, torch.Tensor]:
    r"""A flat params dict that differs from the module's own."""

    own = dict(module.named_parameters())
    other = flatten_names(case.params(seed=123))
    assert sorted(own) == sorted(other)
    assert any(not torch.equal(own[k], other[k]) for k in own)
    return other


# -- names ----------------------------------------------------------------------------------


def test_module_names_are_the_tree_paths(case: Case):
    module = module_of(case)
    assert sorted(dict(module.named_parameters())) == sorted(flatten_names(case.spec.init()))
    assert sorted(dict(module.named_buffers())) == sorted(flatten_names(case.spec.init_state()))
    # trainable and non-trainable are kept apart
    assert not any(k.endswith(("mask", "order")) for k, _ in module.named_parameters())


def test_module_forward_is_spec_apply_on_own_params(case: Case):
    params = case.params(seed=1)
    module = module_of(case, params)
    c, x = case.c(4), case.x(4)
    d = module(c)
    assert isinstance(d, NormalizingFlow)
    assert torch.equal(d.log_prob(x), case.spec.apply(params, c).log_prob(x))


# -- functional_call ------------------------------------------------------------------------


def test_functional_call_equals_spec_apply_even_after_return(case: Case):
    module = module_of(case)
    other = _other_params(case, module)
    c, x = case.c(4), case.x(4)
    d = functional_call(module, other, (c,))
    # evaluated after functional_call returned (module holds its own weights again)
    lp = d.log_prob(x)
    expected = case.spec.apply(unflatten_names(other), c)
    assert torch.equal(lp, expected.log_prob(x))
    assert not torch.allclose(lp, module(c).log_prob(x), atol=1e-4)
    assert torch.equal(d.transform(x), expected.transform(x))
    torch.manual_seed(5)
    s = d.sample((3,))
    torch.manual_seed(5)
    assert torch.equal(s, expected.sample((3,)))
    torch.manual_seed(6)
    s = d.rsample((3,))
    torch.manual_seed(6)
    assert torch.equal(s, expected.rsample((3,)))


def test_functional_call_grads_reach_the_given_params(case: Case):
    module = module_of(case)
    other = {k: v.clone().requires_grad_() for k, v in _other_params(case, module).items()}
    c, x = case.c(4), case.x(4)
    d = functional_call(module, other, (c,))
    loss = -d.log_prob(x).sum()
    grads = torch.autograd.grad(loss, list(other.values()), allow_unused=True)
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 1e-3
    # the module's own parameters got nothing
    assert all(p.grad is None for p in module.parameters())
    # and they equal torch.func.grad through the pure path
    g = grad(lambda p: -case.spec.apply(unflatten_names(p), c).log_prob(x).sum())(
        {k: v.detach() for k, v in other.items()})
    for (name, value), got in zip(other.items(), grads, strict=True):
        assert_close(got, g[name], atol=1e-5, what=name)


def test_functional_call_under_vmap_and_grad(case: Case):
    module = module_of(case)
    P = L.init_stacked(case.spec, 3, seed=7)
    Pf = flatten_names(P)
    c, x = case.c(), case.x(2)
    out = vmap(lambda p: functional_call(module, p, (c,)).log_prob(x))(Pf)
    loop = torch.stack([case.spec.apply(p, c).log_prob(x) for p in L.tree_unstack(P)])
    assert_close(out, loop, what="vmap(functional_call)")
    assert rows_distinct(out, 1e-3)
    g = grad(lambda p: functional_call(module, p, (c,)).log_prob(x).sum())(L.tree_unstack(Pf)[0])
    assert sum(v.abs().sum() for v in g.values()) > 1e-3


def test_zuko_functional_call_ignores_params_the_contrast():
    r"""Why the adapter exists: with Zuko 1.6, ``functional_call`` silently ignores params
    (the distribution reads the module's weights lazily), so the grads are zero."""

    torch.manual_seed(0)
    z = zuko.flows.MAF(FEATURES, 2, hidden_features=HIDDEN)
    ours = A.from_zuko(z)
    other = {k: (v + 0.5).requires_grad_() for k, v in ours.named_parameters()}
    c, x = torch.randn(4, 2), torch.randn(4, FEATURES)
    lz = functional_call(z, other, (c,)).log_prob(x)
    lo = functional_call(ours, other, (c,)).log_prob(x)
    assert torch.allclose(lz, z(c).log_prob(x))  # Zuko: params ignored
    assert not torch.allclose(lo, ours(c).log_prob(x), atol=1e-3)  # ours: params used
    gz = torch.autograd.grad(lz.sum(), list(other.values()), allow_unused=True)
    go = torch.autograd.grad(lo.sum(), list(other.values()), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in gz)
    assert all(g is not None for g in go) and sum(g.abs().sum() for g in go) > 1e-3


# -- state_dict, save/load ------------------------------------------------------------------


def test_state_dict_round_trip_restores_exactly(case: Case):
    a, b = module_of(case, case.params(seed=1)), module_of(case, case.params(seed=2))
    c, x = case.c(4), case.x(4)
    assert not torch.allclose(a(c).log_prob(x), b(c).log_prob(x), atol=1e-4)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(c).log_prob(x), b(c).log_prob(x))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def _distinct_random_modules(name: str, **kwargs):
    features = 6  # enough features that two random orders/masks differ
    for seed in range(20):
        torch.manual_seed(seed)
        a = getattr(A.flows, name)(features, 2, hidden_features=HIDDEN, **kwargs)
        torch.manual_seed(1000 + seed)
        b = getattr(A.flows, name)(features, 2, hidden_features=HIDDEN, **kwargs)
        sa, sb = a.state_dict(), b.state_dict()
        keys = [k for k in sa if k.endswith(("order", "mask")) and ".hyper." not in k]
        if any(not torch.equal(sa[k], sb[k]) for k in keys):
            return a, b, keys, features
    raise AssertionError("could not draw two different random structures")


@pytest.mark.parametrize(("name", "kwargs"), [("MAF", {"randperm": True}), ("NSF", {"randperm": True}),
                                              ("RealNVP", {"randmask": True})])
def test_state_dict_round_trip_restores_random_orders(name, kwargs):
    a, b, keys, features = _distinct_random_modules(name, **kwargs)
    c, x = torch.randn(8, 2), torch.randn(8, features)
    b.load_state_dict(a.state_dict())
    for k in keys:
        assert torch.equal(a.state_dict()[k], b.state_dict()[k]), k
    assert torch.equal(a(c).log_prob(x), b(c).log_prob(x))
    # the structure really took over: the inverse (which depends on it) matches too
    z = torch.randn(8, features)
    assert torch.equal(a(c).transform.inv(z), b(c).transform.inv(z))
    assert (a(c).transform(a(c).transform.inv(z)) - z).abs().max() < 1e-4


def test_torch_save_load_module_and_param_tree(case: Case, tmp_path):
    params = case.params(seed=3)
    module = module_of(case, params)
    c, x = case.c(4), case.x(4)
    torch.save(module, tmp_path / "module.pt")
    loaded = torch.load(tmp_path / "module.pt", weights_only=False)
    assert torch.equal(loaded(c).log_prob(x), module(c).log_prob(x))
    torch.save(params, tmp_path / "params.pt")
    tree = torch.load(tmp_path / "params.pt", weights_only=True)
    assert torch.equal(case.spec.apply(tree, c).log_prob(x), case.spec.apply(params, c).log_prob(x))
    torch.save(module.state_dict(), tmp_path / "sd.pt")
    fresh = module_of(case, case.params(seed=4))
    fresh.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    assert torch.equal(fresh(c).log_prob(x), module(c).log_prob(x))


def test_to_module_puts_state_on_the_params_dtype(case: Case):
    params = case.params(seed=2, dtype=torch.float64)
    module = module_of(case, params)
    assert all(b.dtype == torch.float64 for b in module.buffers() if b.is_floating_point())
    c, x = case.c(3, dtype=torch.float64), case.x(3, dtype=torch.float64)
    assert torch.equal(module(c).log_prob(x), case.spec.apply(params, c).log_prob(x))


def test_adapter_module_to_float64():
    module = make_module("NSF", 2)
    c, x = torch.randn(4, 2), torch.randn(4, FEATURES)
    lp = module(c).log_prob(x)
    module.to(torch.float64)
    lp64 = module(c.double()).log_prob(x.double())
    assert lp64.dtype == torch.float64
    assert_close(lp64.float(), lp, atol=1e-5)


# -- to_functional ----------------------------------------------------------------------------


def test_to_functional_of_our_module(case: Case):
    module = module_of(case, case.params(seed=5))
    apply_fn, params = A.to_functional(module)
    c, x = case.c(4), case.x(4)
    assert torch.equal(apply_fn(params, c).log_prob(x), module(c).log_prob(x))
    # params is a copy: changing the module afterwards leaves it alone
    with torch.no_grad():
        next(module.parameters()).add_(1.0)
    assert not torch.allclose(apply_fn(params, c).log_prob(x), module(c).log_prob(x), atol=1e-4)
    # pure in params: vmap over stacked params, grad
    P = L.init_stacked(case.spec, 3, seed=6)
    out = vmap(lambda p: apply_fn(p, c).log_prob(x))(P)
    loop = torch.stack([case.spec.apply(p, c).log_prob(x) for p in L.tree_unstack(P)])
    assert_close(out, loop)
    g = grad(lambda p: apply_fn(p, c).log_prob(x).sum())(params)
    assert sum(v.abs().sum() for v in flatten_names(g).values()) > 1e-3


@pytest.mark.parametrize("name", ["MAF", "NSF", "RealNVP"])
def test_to_functional_of_a_zuko_flow_honours_params(name):
    torch.manual_seed(0)
    z = getattr(zuko.flows, name)(FEATURES, 2, hidden_features=HIDDEN)
    apply_fn, params = A.to_functional(z)
    c, x = torch.randn(4, 2), torch.randn(4, FEATURES)
    with torch.no_grad():
        assert_close(apply_fn(params, c).log_prob(x), z(c).log_prob(x), atol=1e-6)
    changed = L.tree_scale(params, 1.5)
    lp = apply_fn(changed, c).log_prob(x)
    assert not torch.allclose(lp, z(c).log_prob(x), atol=1e-3)
    # it equals a Zuko flow that really holds the changed params
    twin = getattr(zuko.flows, name)(FEATURES, 2, hidden_features=HIDDEN)
    twin.load_state_dict({**z.state_dict(), **flatten_names(changed)})
    assert_close(lp, twin(c).log_prob(x).detach(), atol=1e-5)
    # gradients w.r.t. the given params are nonzero (Zuko's own functional_call gives zero)
    g = grad(lambda p: apply_fn(p, c).log_prob(x).sum())(params)
    assert sum(v.abs().sum() for v in flatten_names(g).values()) > 1e-3
    # sampling reads the given params too
    torch.manual_seed(1)
    s = apply_fn(changed, c).sample((2,))
    torch.manual_seed(1)
    assert_close(s, twin(c).sample((2,)), atol=1e-5)


class _MyGaussian(A.lazy.LazyDistribution):
    r"""A user's own lazy distribution: :math:`\mathcal{N}(\mu(c), \sigma(c)^2)`."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 2 * FEATURES)

    def forward(self, c=None):
        loc, log_scale = self.net(c).chunk(2, dim=-1)
        return DiagNormal(loc, log_scale.exp())


def test_to_functional_of_a_user_lazy_distribution():
    torch.manual_seed(0)
    module = _MyGaussian()
    apply_fn, params = A.to_functional(module)
    assert sorted(flatten_names(params)) == ["net.bias", "net.weight"]
    c, x = torch.randn(4, 2), torch.randn(4, FEATURES)
    assert_close(apply_fn(params, c).log_prob(x), module(c).log_prob(x).detach(), atol=1e-6)
    changed = {"net": {"weight": params["net"]["weight"] * 2, "bias": params["net"]["bias"] + 1}}
    lp = apply_fn(changed, c).log_prob(x)
    loc, log_scale = (c @ changed["net"]["weight"].T + changed["net"]["bias"]).chunk(2, dim=-1)
    expected = torch.distributions.Normal(loc, log_scale.exp()).log_prob(x).sum(-1)
    assert_close(lp, expected, atol=1e-5)
    g = grad(lambda p: apply_fn(p, c).log_prob(x).sum())(params)
    assert g["net"]["weight"].abs().sum() > 1e-3
