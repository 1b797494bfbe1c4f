r"""``nn.linear`` under ``vmap`` over the input alone runs the batched call on the physical
tensor: same values and derivatives as the plain batched call, under every composition."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jacfwd, jacrev, vmap
from torch.utils._python_dispatch import TorchDispatchMode

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


Ws, Bs = torch.randn(7, 6, 4, dtype=torch.float64), torch.randn(7, 6, dtype=torch.float64)  # 7 parameter sets
R = torch.randn(5, 4, dtype=torch.float64)  # 5 rows read by every parameter set


def _ops(f, *args):
    r"""The aten operations ``f(*args)`` dispatches, by name."""

    names = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with Count():
        f(*args)
    return names


@pytest.mark.parametrize("case", ["per_sample", "shared_rows", "batched_rows", "bias_shared", "no_bias", "masked"])
def test_batched_weight_folds_into_one_batched_gemm(case):
    # a batched weight (ensembles, per-sample parameters) with batched or shared x, batched or
    # shared bias: the values and the derivatives of the plain per-set call, and one baddbmm
    M = torch.rand(6, 4) > 0.3
    x, x_dim, b, b_dim, mask = X, 0, Bs, 0, None
    if case == "shared_rows":
        x, x_dim = R, None
    elif case == "batched_rows":
        x = torch.randn(7, 5, 4, dtype=torch.float64)
    elif case == "bias_shared":
        b, b_dim = B, None
    elif case == "no_bias":
        b, b_dim = None, None
    elif case == "masked":
        mask = M

    def plain(w, v, c):
        return F.linear(v, w if mask is None else w * mask, c)

    def loss(f, w, v, c):
        return vmap(f, in_dims=(0, x_dim, b_dim))(w, v, c).tanh().sum()

    folded = lambda w, v, c: linear(v, w, c, mask)  # noqa: E731
    ref = torch.stack([plain(Ws[k], x if x_dim is None else x[k], b if b_dim is None else b[k]) for k in range(7)])
    torch.testing.assert_close(vmap(folded, in_dims=(0, x_dim, b_dim))(Ws, x, b), ref)
    argnums = (0, 1) if b is None else (0, 1, 2)
    g = grad(lambda *a: loss(folded, *a), argnums=argnums)(Ws, x, b)
    g_ref = grad(lambda *a: loss(plain, *a), argnums=argnums)(Ws, x, b)
    for a, r in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, r)
    # per-set gradients (vmap of grad) also match, and the weight's gradient keeps its layout
    per_set = vmap(grad(lambda w, v, c: folded(w, v, c).tanh().sum()), in_dims=(0, x_dim, b_dim))(Ws, x, b)
    torch.testing.assert_close(per_set, vmap(grad(lambda w, v, c: plain(w, v, c).tanh().sum()), in_dims=(0, x_dim, b_dim))(Ws, x, b))
    assert g[0].is_contiguous()
    ops = _ops(lambda: vmap(folded, in_dims=(0, x_dim, b_dim))(Ws, x, b))
    assert ops.count("baddbmm" if b is not None else "bmm") == 1 and "mm" not in ops and "addmm" not in ops


def test_batched_weight_at_another_dim_and_out_dims():
    Wt = Ws.permute(1, 0, 2).contiguous()  # the 7 sets on dim 1
    ref = torch.einsum("nij,nj->ni", Ws, X) + Bs
    torch.testing.assert_close(vmap(lambda w, x, b: linear(x, w, b), in_dims=(1, 0, 0))(Wt, X, Bs), ref)
    torch.testing.assert_close(vmap(lambda w, x, b: linear(x, w, b), in_dims=(1, 0, 0), out_dims=1)(Wt, X, Bs), ref.T)
    # nested: per-set weights outside, rows inside (the inner vmap batches x alone)
    rows = torch.randn(7, 5, 4, dtype=torch.float64)
    out = vmap(lambda w, r: vmap(lambda v: linear(v, w))(r))(Ws, rows)
    torch.testing.assert_close(out, torch.einsum("kij,knj->kni", Ws, rows))


def test_batched_weight_jacobians_and_compile():
    ref = vmap(jacrev(lambda w, x: F.linear(x, w, B).tanh()))(Ws, X)
    torch.testing.assert_close(vmap(jacrev(lambda w, x: linear(x, w, B).tanh()))(Ws, X), ref)
    f = torch.compile(lambda w, x: vmap(lambda a, v: linear(v, a, B))(w, x), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(f(Ws, X), torch.einsum("nij,nj->ni", Ws, X) + B)
    g = torch.compile(grad(lambda w: vmap(lambda a, v: linear(v, a, B))(w, X).tanh().sum()), backend="aot_eager")
    torch.testing.assert_close(g(Ws), grad(lambda w: torch.stack([F.linear(X[k], w[k], B) for k in range(7)]).tanh().sum())(Ws))


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
