r"""``torch.compile(fullgraph=True)`` on the spec path equals eager, for every flow of the
catalogue: ``log_prob``, sampling, ``vmap`` over stacked parameters and a training step
(``torch.func.grad`` inside the compiled function, and ``loss.backward()`` through it),
in both orders with eager calls on the same spec (the spec's caches must not break either).

Every flow runs with ``backend="aot_eager"`` (graph breaks and functionalization problems
show up in seconds); a few run with inductor.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch.func import grad, vmap

from lazydist_functional import tree_stack
from lazydist_functional.catalogue import FLOWS, make_spec, sample_input
from lazydist_functional.pytree import flatten_names

from conftest import assert_close

pytestmark = pytest.mark.slow

FEATURES, CONTEXT, N = 3, 2, 6
NAMES = list(FLOWS)
INDUCTOR = ["MAF", "NAF", "GMM"]


# Sampling traces the inverse, whose root finding unrolls ``iterations`` steps per group and
# transform: fewer of both keep tracing short (compiled and eager use the same spec).
SAMPLING = {name: dict(transforms=2, iterations=3) for name in ("NAF", "UNAF", "SOSPF", "BPF", "GF")}


FLOW_PARAMS = NAMES


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _setup(name: str, **overrides):
    spec = make_spec(name, FEATURES, CONTEXT, **overrides)  # a fresh spec: nothing cached before the first call
    params = spec.init(torch.Generator().manual_seed(0))
    c = torch.randn(N, CONTEXT, generator=torch.Generator().manual_seed(1))
    x = sample_input(name, (N, FEATURES), generator=torch.Generator().manual_seed(2))
    return spec, params, c, x


def _close_trees(a, b, atol=1e-5, rtol=1e-4):
    fa, fb = flatten_names(a), flatten_names(b)
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert_close(fa[k], fb[k], atol=atol, rtol=rtol, what=k)


def _loss(spec, p, c, x):
    return -spec.apply(p, c).log_prob(x).mean()


@pytest.mark.parametrize("name", FLOW_PARAMS)
def test_log_prob_compiled_then_eager(name):
    spec, params, c, x = _setup(name)
    f = torch.compile(lambda p, c, x: spec.apply(p, c).log_prob(x), fullgraph=True, backend="aot_eager")
    got = f(params, c, x)  # compiled first: the spec's caches are first filled while tracing
    expected = spec.apply(params, c).log_prob(x)  # then eager on the same spec
    assert got.shape == (N,) and torch.isfinite(got).all()
    assert_close(got, expected, atol=1e-5, rtol=1e-4, what="compiled log_prob")
    other = spec.init(torch.Generator().manual_seed(3))  # new values, same shapes
    assert_close(f(other, c, x), spec.apply(other, c).log_prob(x), atol=1e-5, rtol=1e-4, what="new params")


@pytest.mark.parametrize("name", FLOW_PARAMS)
def test_sample_compiled_equals_eager(name):
    spec, params, c, _ = _setup(name, **SAMPLING.get(name, {}))
    method = "rsample" if spec.apply(params, c).has_rsample else "sample"
    f = torch.compile(lambda p, c: getattr(spec.apply(p, c), method)((4,)), fullgraph=True, backend="aot_eager")
    torch.manual_seed(5)
    got = f(params, c)
    torch.manual_seed(5)
    expected = getattr(spec.apply(params, c), method)((4,))
    assert got.shape == (4, N, FEATURES)
    assert_close(got, expected, atol=1e-4, rtol=1e-4, what=f"compiled {method}")


@pytest.mark.parametrize("name", FLOW_PARAMS)
def test_vmap_over_stacked_params_eager_then_compiled(name):
    spec, params, c, x = _setup(name)
    P = tree_stack([params, spec.init(torch.Generator().manual_seed(4))])

    def f(P, c, x):
        return vmap(lambda p: spec.apply(p, c).log_prob(x))(P)

    expected = f(P, c, x)  # eager first: the caches are filled outside the trace
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(P, c, x)
    assert got.shape == (2, N)
    assert_close(got, expected, atol=1e-5, rtol=1e-4, what="compiled vmap")


@pytest.mark.parametrize("name", FLOW_PARAMS)
def test_training_step_compiled_equals_eager(name):
    spec, params, c, x = _setup(name)
    step = torch.compile(lambda p, c, x: grad(lambda q: _loss(spec, q, c, x))(p), fullgraph=True,
                         backend="aot_eager")
    got = step(params, c, x)
    _close_trees(got, grad(lambda q: _loss(spec, q, c, x))(params))
    assert any(v.abs().sum() > 0 for v in flatten_names(got).values())


@pytest.mark.parametrize("name", INDUCTOR)
def test_inductor_log_prob_and_backward(name):
    spec, params, c, x = _setup(name)
    loss = torch.compile(lambda p, c, x: _loss(spec, p, c, x), fullgraph=True)
    leaves = {k: v.clone().requires_grad_() for k, v in flatten_names(params).items()}
    value = loss(leaves, c, x)  # a flat dotted tree, as from dict(module.named_parameters())
    value.backward()
    expected = {k: v.clone().requires_grad_() for k, v in flatten_names(params).items()}
    reference = _loss(spec, expected, c, x)
    reference.backward()
    assert_close(value.detach(), reference.detach(), atol=1e-4, rtol=1e-4, what="inductor loss")
    for k in leaves:
        assert_close(leaves[k].grad, expected[k].grad, atol=1e-4, rtol=1e-3, what=k)
