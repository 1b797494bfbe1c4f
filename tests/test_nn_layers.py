r"""Network modules: Zuko parity (same state dict, same outputs) and pure apply under vmap."""

from __future__ import annotations

import pytest

import torch
import torch.nn as nn
import zuko
from torch.func import vmap

import lazydist_functional as L
import lazydist_functional.adapters as Z
from lazydist_functional.nn import Linear, Residual


def test_linear_stack_and_mlp_match_zuko():
    for ours, ref, x in [
        (Z.nn.Linear(3, 2, stack=4), zuko.nn.Linear(3, 2, stack=4), torch.randn(5, 4, 3)),
        (Z.nn.MLP(3, 2, [8, 8], activation=nn.ELU), zuko.nn.MLP(3, 2, [8, 8], activation=nn.ELU), torch.randn(5, 3)),
        (Z.nn.MLP(3, 2, [8, 8], normalize=True), zuko.nn.MLP(3, 2, [8, 8], normalize=True), torch.randn(5, 3)),
    ]:
        assert sorted(ours.state_dict()) == sorted(ref.state_dict())
        ours.load_state_dict(ref.state_dict())
        assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_layer_norm_and_residual():
    x = torch.randn(4, 6)
    assert torch.allclose(Z.nn.LayerNorm()(x), zuko.nn.LayerNorm()(x))
    block = Z.nn.Residual(Z.nn.Linear(6, 6), nn.ReLU(), Z.nn.Linear(6, 6))
    first, second = block.trees()[0]["0"], block.trees()[0]["2"]
    inner = torch.relu(x @ first["weight"].T + first["bias"]) @ second["weight"].T + second["bias"]
    assert torch.allclose(block(x), x + inner, atol=1e-6)


def test_pure_layers_vmap_over_stacked_params():
    layer = Residual(Linear(3, 3), nn.Tanh(), Linear(3, 3))
    P = L.init_stacked(layer, 5)
    x = torch.randn(5, 3)
    out = vmap(layer.apply)(P, x)
    loop = torch.stack([layer.apply(p, x[i]) for i, p in enumerate(L.tree_unstack(P))])
    assert torch.allclose(out, loop, atol=1e-6) and not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("hidden", [[16, 16], [16, 32, 32]])
@pytest.mark.parametrize("context", [0, 2])
def test_residual_masked_mlp_matches_zuko_and_is_autoregressive(hidden, context):
    ref = zuko.flows.MAF(3, context, hidden_features=hidden, residual=True)
    ours = Z.flows.MAF(3, context, hidden_features=hidden, residual=True)
    assert sorted(ref.state_dict()) == sorted(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    c = torch.randn(5, context) if context else None
    x = torch.randn(5, 3)
    assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-5)
    # with our own masks: y_i depends on x_j only for j before i in the order (ascending here)
    flow = Z.flows.MAF(3, context, hidden_features=hidden, residual=True, transforms=1)
    ci = torch.randn(context) if context else None
    J = torch.func.jacrev(lambda v: flow(ci).transform(v))(torch.randn(3))
    assert torch.equal(J.triu(1), torch.zeros(3, 3))
    assert (J.tril(-1).abs() > 0).any()
