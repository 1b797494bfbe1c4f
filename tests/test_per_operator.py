r"""The compiled-vmap path of stacked monotonic networks (``nn.monotonic.per_operator``): while
``torch.compile`` traces a ``vmap`` over inputs with shared weight stacks, NAF's and UNAF's
networks run one operator at a time on plain GEMMs. Values and gradients equal the stacked
(eager) products; the traced graph has no weight copied per sample (no ``bmm``); Radial's
log-determinant traces under a dynamic compiled ``vmap``.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.backends.common import aot_autograd
from torch.func import grad, vmap

from lazydist_functional.catalogue import make_spec, sample_input
from lazydist_functional.nn import linear
from lazydist_functional.nn.monotonic import folded_value_and_tangent, per_operator, per_operator_linear

from conftest import assert_close

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _graph_ops(fn, *args) -> set[str]:
    ops: set[str] = set()

    def record(gm, inputs):
        ops.update(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    out = torch.compile(fn, backend=aot_autograd(fw_compiler=record), dynamic=True, fullgraph=True)(*args)
    return out, ops


def test_per_operator_only_under_compiled_vmap_of_inputs():
    W, x = torch.randn(3, 4, 5), torch.randn(6, 3, 5)
    assert not per_operator(x, (W,))  # eager: the stacked product
    seen: list[bool] = []

    def probe(xi, Wi):
        seen.append(per_operator(xi, (Wi,)))
        return xi.sum()

    compiled = torch.compile(lambda x, W: vmap(probe, in_dims=(0, None))(x, W), backend="eager", fullgraph=True)
    compiled(x, W)
    assert seen == [True]  # compiled, x batched, weights shared
    seen.clear()
    torch.compile(lambda x, W: vmap(probe)(x, W.expand(6, 3, 4, 5)), backend="eager", fullgraph=True)(x, W)
    assert seen == [False]  # batched weights: the stacked product (one batched GEMM)


def test_per_operator_linear_equals_stacked_and_has_no_weight_copy():
    g = torch.Generator().manual_seed(0)
    W, b, x = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, generator=g), torch.randn(7, 3, 5, generator=g)
    out, ops = _graph_ops(lambda x: vmap(lambda xi: per_operator_linear(xi, W, b))(x), x)
    assert_close(out, linear(x, W, b), atol=1e-6, rtol=1e-6, what="per-operator linear")
    assert "aten.bmm.default" not in ops and "aten.mm.default" in ops, sorted(ops)


def test_folded_network_per_operator_values_and_gradients():
    g = torch.Generator().manual_seed(1)
    S, H = 3, 6
    v, w = torch.randn(5, S, H, generator=g), torch.randn(S, H, generator=g)
    Ws = [torch.randn(S, H, H, generator=g), torch.randn(S, 1, H, generator=g)]
    bs = [torch.randn(S, H, generator=g), torch.randn(S, 1, generator=g)]

    def loss(Ws, bs, v):
        y, dy = vmap(lambda vi: folded_value_and_tangent(vi, w, Ws, bs))(v)
        return (y.sin() + dy.cos()).sum()

    eager = grad(loss, argnums=(0, 1, 2))(Ws, bs, v)
    compiled = torch.compile(grad(loss, argnums=(0, 1, 2)), backend="aot_eager", dynamic=True, fullgraph=True)(Ws, bs, v)
    for a, e in zip(torch.utils._pytree.tree_leaves(compiled), torch.utils._pytree.tree_leaves(eager), strict=True):
        assert_close(a, e, atol=1e-5, rtol=1e-5, what="per-operator network gradient")


@pytest.mark.parametrize("name", ["UNAF", "Radial"])
def test_compiled_vmap_log_prob_and_grad_equal_eager(name):
    small = {"UNAF": dict(transforms=1, hidden_features=[8], signal=4, network={"hidden_features": [8, 8]})}
    spec = make_spec(name, 3, 2, **small.get(name, {}))
    params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()

    def loss(params, c, x):
        return vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x).sum()

    g = torch.Generator().manual_seed(2)
    c, x = torch.randn(4, 2, generator=g), sample_input(name, (4, 3), generator=g)
    compiled = torch.compile(grad(loss), backend="aot_eager", dynamic=True, fullgraph=True)
    for a, e in zip(torch.utils._pytree.tree_leaves(compiled(params, c, x)),
                    torch.utils._pytree.tree_leaves(grad(loss)(params, c, x)), strict=True):
        assert_close(a, e, atol=1e-5, rtol=1e-4, what=f"{name} compiled vmap gradient")
