r"""Every flow of the catalogue under ``torch.func``, on both paths: ``vmap`` over contexts
equals the batched call, ``vmap`` over stacked parameters equals a loop, ``grad`` equals
autograd through the adapter module, and ``functional_call`` on the module equals
``spec.apply`` with the given parameters (and differs from the module's own)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, vmap

from lazydist_functional import init_stacked, tree_unstack
from lazydist_functional.adapters import to_module
from lazydist_functional.catalogue import FLOWS, make_spec, sample_input
from lazydist_functional.pytree import flatten_names, tree_map

FEATURES, CONTEXT, N, K = 3, 2, 5, 3
NAMES = sorted(FLOWS)


def _setup(name: str):
    context = 0 if name == "GMM" else CONTEXT
    spec = make_spec(name, FEATURES, context)
    params = spec.init(torch.Generator().manual_seed(0))
    c = torch.randn(N, context, generator=torch.Generator().manual_seed(1)) if context else None
    x = sample_input(name, (N, FEATURES), generator=torch.Generator().manual_seed(2))
    return spec, params, c, x


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_contexts_equals_the_batched_call(name):
    spec, params, c, x = _setup(name)
    if c is None:
        pytest.skip("unconditional")
    batched = spec.apply(params, c).log_prob(x)
    mapped = vmap(lambda ci, xi: spec.apply(params, ci).log_prob(xi))(c, x)
    torch.testing.assert_close(mapped, batched, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_stacked_params_equals_a_loop(name):
    spec, _, c, x = _setup(name)
    stacked = init_stacked(spec, K, seed=3)
    mapped = vmap(lambda p: spec.apply(p, c).log_prob(x))(stacked)
    looped = torch.stack([spec.apply(p, c).log_prob(x) for p in tree_unstack(stacked)])
    torch.testing.assert_close(mapped, looped, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_grad_equals_autograd_through_the_module(name):
    spec, params, c, x = _setup(name)
    g = grad(lambda p: spec.apply(p, c).log_prob(x).mean())(params)
    module = to_module(spec, params)
    module(c).log_prob(x).mean().backward()
    for key, p in module.named_parameters():
        torch.testing.assert_close(flatten_names(g)[key], p.grad, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_equals_spec_apply_with_the_given_params(name):
    spec, params, c, x = _setup(name)
    module = to_module(spec, params)
    other = tree_map(lambda t: t + 0.05 * torch.randn_like(t), params)
    via_module = functional_call(module, flatten_names(other), (c,)).log_prob(x)
    torch.testing.assert_close(via_module, spec.apply(other, c).log_prob(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(via_module, module(c).log_prob(x))


@pytest.mark.parametrize("name", NAMES)
def test_stacked_parameters_without_context_are_a_batch(name):
    spec = make_spec(name, FEATURES, 0)
    stacked = init_stacked(spec, K)
    d = spec.apply(stacked)
    assert d.batch_shape == (K,)
    x = d.sample((2,))
    assert x.shape == (2, K, FEATURES)
    y = sample_input(name, (2, K, FEATURES), generator=torch.Generator().manual_seed(3))
    members = [spec.apply(p).log_prob(y[:, i]) for i, p in enumerate(tree_unstack(stacked))]
    torch.testing.assert_close(d.log_prob(y), torch.stack(members, -1), atol=1e-4, rtol=1e-4)
