r"""``torch.compile(dynamic=True)`` keeps the batch size symbolic: the library's own Python
(its input checks included) must not specialize it, or every batch size compiles a graph."""

from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter
from torch.func import grad

import lazydist_functional.meta as M
from lazydist_functional.flows import MAF

from conftest import assert_close


def test_stacked_parameters_compile_one_graph_for_every_batch_size():
    r"""Each sample's flow parameters from a hypernetwork (a parameter tree with a leading
    dimension N, no ``vmap``): a gradient step compiles once for N = 5, 7, 11."""

    torch._dynamo.reset()
    spec = MAF(2, 0, transforms=1, hidden_features=[8])
    weights = torch.randn(3, M.param_count(spec), generator=torch.Generator().manual_seed(0))

    def loss(w, c, x):
        return -spec.apply(M.unravel(spec, 0.1 * c @ w)).log_prob(x).mean()

    counter = CompileCounter()
    step = torch.compile(lambda c, x: grad(loss)(weights, c, x), backend=counter, dynamic=True)
    for n in (5, 7, 11):  # sizes no other dimension has (duck sizing would tie them)
        c, x = torch.randn(n, 3), torch.randn(n, 2)
        assert_close(step(c, x), grad(loss)(weights, c, x), atol=1e-5, rtol=1e-4, what=f"N={n}")
    assert counter.frame_count == 1, f"compiled {counter.frame_count} graphs for 3 batch sizes"
    torch._dynamo.reset()
