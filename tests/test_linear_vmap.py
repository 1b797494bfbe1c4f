r"""``nn.linear`` under ``vmap`` over the input alone runs the batched call on the physical
tensor: same values and derivatives as the plain batched call, under every composition."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jacfwd, jacrev, vmap

from lazydist_functional.nn import linear

W, B = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
X = torch.randn(7, 4, dtype=torch.float64)
S = torch.randn(3, 6, 4, dtype=torch.float64)  # 3 stacked operators


def test_vmap_over_rows_and_columns():
    ref = F.linear(X, W, B)
    torch.testing.assert_close(vmap(lambda x: linear(x, W, B))(X), ref)
    torch.testing.assert_close(vmap(lambda x: linear(x, W, B), in_dims=1)(X.T.contiguous()), ref)
    torch.testing.assert_close(vmap(lambda x: linear(x, W, B), out_dims=1)(X), ref.T)


def test_nested_vmap_and_mask():
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    M = torch.rand(6, 4) > 0.5
    torch.testing.assert_close(vmap(vmap(lambda v: linear(v, W, B, M)))(x), F.linear(x, W * M, B))


def test_stacked_weight():
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    ref = torch.einsum("sij,nsj->nsi", S, x)
    torch.testing.assert_close(vmap(lambda v: linear(v, S))(x), ref)
    # a 1-D input against stacked weights broadcasts over the operators: not folded
    torch.testing.assert_close(vmap(lambda v: linear(v, S))(X), torch.einsum("sij,nj->nsi", S, X))


def test_batched_weight_is_not_folded():
    Ws = torch.randn(7, 6, 4, dtype=torch.float64)
    torch.testing.assert_close(vmap(lambda w, x: linear(x, w, B))(Ws, X), torch.einsum("nij,nj->ni", Ws, X) + B)


@pytest.mark.parametrize("order", ["grad_of_vmap", "vmap_of_grad"])
def test_gradients(order):
    def loss(w, x):
        return linear(x, w, B).tanh().sum()

    ref = vmap(grad(lambda w, x: F.linear(x, w, B).tanh().sum()), in_dims=(None, 0))(W, X)
    if order == "grad_of_vmap":
        torch.testing.assert_close(grad(lambda w: vmap(lambda x: loss(w, x))(X).sum())(W), ref.sum(0))
    else:
        torch.testing.assert_close(vmap(grad(loss), in_dims=(None, 0))(W, X), ref)


def test_jacobians_in_and_outside_vmap():
    ref = vmap(jacrev(lambda x: F.linear(x, W, B).tanh()))(X)
    torch.testing.assert_close(vmap(jacrev(lambda x: linear(x, W, B).tanh()))(X), ref)
    torch.testing.assert_close(vmap(jacfwd(lambda x: linear(x, W, B).tanh()))(X), ref)
    full = jacrev(lambda x: vmap(lambda v: linear(v, W, B).tanh())(x))(X)
    torch.testing.assert_close(torch.einsum("nind->nid", full), ref)


def test_compiles_without_graph_break():
    f = torch.compile(lambda x: vmap(lambda v: linear(v, W, B))(x), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(f(X), F.linear(X, W, B))
