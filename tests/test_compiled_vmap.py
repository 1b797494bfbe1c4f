r"""``torch.compile(vmap(per-sample log_prob), dynamic=True)`` equals the batched call, for the
flows whose per-sample code takes compile-only paths under ``vmap``: the stacked monotonic
networks of NAF (a shared weight stack against vmapped rows, :mod:`lazydist_functional.nn.linear`;
UNAF takes the same path, at several times the tracing cost),
the fixed-step ODE of CNF, and the splines of NSF/NCSF (cumulative knot sums as a chain of
additions under ``vmap``, ``transforms/spline.py``), and BPF (its polynomial unrolled while compiling,
its bounded coefficients through ``matmul``'s batching rule). ``backend="aot_eager"`` with ``dynamic=True`` traces what
inductor receives (the batching rules run while tracing), in seconds; the benchmark
``benchmarks/compiled_vmap.py`` times the inductor version.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters
from torch.func import vmap

from lazydist_functional.catalogue import make_spec, sample_input

from conftest import assert_close

pytestmark = pytest.mark.slow

FEATURES, CONTEXT = 3, 2
SMALL = {"NAF": dict(transforms=1, hidden_features=[8], signal=4, network={"hidden_features": [8, 8]}),
         "UNAF": dict(transforms=1, hidden_features=[8], signal=4, network={"hidden_features": [8, 8]}),
         "CNF": dict(hidden_features=[8], steps=2),
         "NSF": dict(transforms=1, hidden_features=[8]),
         "NCSF": dict(transforms=1, hidden_features=[8]),
         "BPF": dict(transforms=1, hidden_features=[8], degree=4)}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_compiled_vmap_log_prob_equals_batched_across_sizes(name):
    spec = make_spec(name, FEATURES, CONTEXT, **SMALL[name])
    params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()

    def per_sample(c, x):
        return vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x)

    compiled = torch.compile(per_sample, backend="aot_eager", dynamic=True, fullgraph=True)
    graphs = counters["stats"]["unique_graphs"]
    for n in (4, 7):  # one graph for both sizes (dynamic; sizes apart from the feature counts, which
        # would be duck-sized together), each equal to the batched call
        g = torch.Generator().manual_seed(n)
        c, x = torch.randn(n, CONTEXT, generator=g), sample_input(name, (n, FEATURES), generator=g)
        expected = spec.apply(params, c, state=state).log_prob(x)
        assert_close(compiled(c, x), expected, atol=1e-5, rtol=1e-4, what=f"{name} compiled vmap, N={n}")
    # no operation specializes the vmapped size (``cat``'s batching rule did: NAF, UNAF, CNF)
    assert counters["stats"]["unique_graphs"] - graphs == 1


@pytest.mark.parametrize("name", ["NSF"])  # NCSF runs the same spline code
def test_compiled_vmap_spline_gradient_equals_batched(name):
    # The compiled spline's knot planes under vmap (a chain of additions): values and the
    # gradient with respect to the input equal the eager batched call's.
    spec = make_spec(name, FEATURES, CONTEXT, **SMALL[name])
    params, state = spec.init(torch.Generator().manual_seed(1)), spec.init_state()
    g = torch.Generator().manual_seed(2)
    c, x = torch.randn(4, CONTEXT, generator=g), sample_input(name, (4, FEATURES), generator=g)

    def per_sample(c, x):
        return vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x)

    compiled = torch.compile(per_sample, backend="aot_eager", dynamic=True, fullgraph=True)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    got, expected = compiled(c, xs[0]), spec.apply(params, c, state=state).log_prob(xs[1])
    got.sum().backward()
    expected.sum().backward()
    assert_close(got, expected, atol=1e-5, rtol=1e-4, what=f"{name} compiled vmap")
    assert_close(xs[0].grad, xs[1].grad, atol=1e-4, rtol=1e-4, what=f"{name} compiled vmap, d/dx")
