r"""Input edges of the continuous flow and its adaptive solver: non-finite rows, empty
batches, meta tensors; and empty batches for every flow of the catalogue.

A NaN in one row of ``x`` (or an infinite context) gives NaN for that row, as torch's own
distributions do, and leaves the other rows exactly as if they were alone: the adaptive
solver leaves entries that start non-finite out of its error norm, so it neither hangs
(the step size would shrink forever) nor lets the bad row steer the others' steps.
"""

from __future__ import annotations

import math

import pytest
import torch

from lazydist_functional import catalogue, flows
from lazydist_functional.ode import odeint_adaptive
from lazydist_functional.pytree import flatten_names

from conftest import assert_close


@pytest.fixture(scope="module")
def cnf() -> tuple[flows.CNF, dict]:
    spec = flows.CNF(3, 2, hidden_features=[16, 16])  # steps="auto": the adaptive solver
    return spec, spec.init(torch.Generator().manual_seed(0))


def _inputs(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)


# -- the solver -------------------------------------------------------------------------------


def test_solver_leaves_a_nan_row_out():
    x = torch.tensor([[1.0, 2.0], [math.nan, 0.0], [-1.0, 0.5]])
    y = odeint_adaptive(lambda t, v: -v, x, 0.0, 1.0)  # element-wise: only that entry is NaN
    assert torch.isnan(y[1, 0]) and y[1, 1] == 0
    assert_close(y[[0, 2]], x[[0, 2]] * math.exp(-1), atol=1e-5, what="finite rows")
    assert torch.equal(y[[0, 2]], odeint_adaptive(lambda t, v: -v, x[[0, 2]], 0.0, 1.0))


def test_solver_on_an_empty_state():
    y = odeint_adaptive(lambda t, v: -v, torch.zeros(0, 3), 0.0, 1.0)
    assert y.shape == (0, 3)


def test_solver_raises_when_the_solution_blows_up():
    # dx/dt = x^2 from x = 2 blows up at t = 1/2: the steps shrink until they underflow.
    with pytest.raises(RuntimeError, match=r"step size underflowed at s = 0\.5"):
        odeint_adaptive(lambda t, v: v * v, torch.tensor([2.0, 0.5]), 0.0, 1.0)


def test_solver_step_budget():
    with pytest.raises(RuntimeError, match=r"did not reach t1 in max_steps=3 steps"):
        odeint_adaptive(lambda t, v: -50 * v, torch.ones(2), 0.0, 1.0, max_steps=3)


def test_solver_on_meta_tensors_says_meta():
    with pytest.raises(RuntimeError, match="meta tensors"):
        odeint_adaptive(lambda t, v: -v, torch.zeros(2, device="meta"), 0.0, 1.0)


# -- CNF ----------------------------------------------------------------------------------


def test_cnf_nan_row_of_x_gives_nan_for_that_row(cnf):
    spec, params = cnf
    x, c = _inputs()
    x[1, 0] = math.nan
    lp = spec.apply(params, c).log_prob(x)
    assert lp.shape == (4,) and torch.isnan(lp[1]) and torch.isfinite(lp[[0, 2, 3]]).all()
    alone = spec.apply(params, c[[0, 2, 3]]).log_prob(x[[0, 2, 3]])
    assert_close(lp[[0, 2, 3]], alone, atol=1e-6, what="the other rows, solved alone")


def test_cnf_infinite_context_gives_nan_for_that_row(cnf):
    spec, params = cnf
    x, c = _inputs()
    c[2, 1] = math.inf
    d = spec.apply(params, c)
    lp = d.log_prob(x)
    assert torch.isnan(lp[2]) and torch.isfinite(lp[[0, 1, 3]]).all()
    assert_close(lp[[0, 1, 3]], spec.apply(params, c[[0, 1, 3]]).log_prob(x[[0, 1, 3]]), atol=1e-6)
    y = d.sample()  # the inverse solve isolates the row too
    assert torch.isnan(y[2]).all() and torch.isfinite(y[[0, 1, 3]]).all()


def test_cnf_empty_batch(cnf):
    spec, params = cnf
    assert spec.apply(params, torch.randn(0, 2)).log_prob(torch.randn(0, 3)).shape == (0,)
    d = spec.apply(params, torch.randn(2))
    assert d.sample((0,)).shape == (0, 3)
    y, lp = d.rsample_and_log_prob((0,))
    assert y.shape == (0, 3) and lp.shape == (0,)
    unconditional = flows.CNF(3, hidden_features=[8])
    assert unconditional.apply(unconditional.init()).log_prob(torch.randn(0, 3)).shape == (0,)


def test_cnf_on_meta_tensors_gives_shapes(cnf):
    spec, _ = cnf
    x, c = _inputs()
    lp = spec.apply(spec.init(device="meta"), c.to("meta")).log_prob(x.to("meta"))
    assert lp.is_meta and lp.shape == (4,)
    always_adaptive = flows.CNF(3, 2, hidden_features=[8], steps=None)
    with pytest.raises(RuntimeError, match="meta tensors"):
        always_adaptive.apply(always_adaptive.init(device="meta"), c.to("meta")).log_prob(x.to("meta"))


def test_cnf_adaptive_under_vmap_still_says_vmap():
    spec = flows.CNF(3, 2, hidden_features=[8], steps=None)
    params = spec.init()
    x, c = _inputs()
    with pytest.raises(RuntimeError, match="cannot run under vmap"):
        torch.func.vmap(lambda x, c: spec.apply(params, c).log_prob(x))(x, c)


# -- every flow -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(catalogue.FLOWS))
def test_empty_batches(name):
    spec = catalogue.make_spec(name, 3, 2)
    params = spec.init(torch.Generator().manual_seed(0))
    assert spec.apply(params, torch.randn(0, 2)).log_prob(torch.randn(0, 3)).shape == (0,)
    assert spec.apply(params, torch.randn(2)).sample((0,)).shape == (0, 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cnf_in_half_precision_does_not_chase_float32_tolerances(dtype):
    # The adaptive solver's default atol 1e-6 is below what bfloat16/float16 resolve: it
    # used to shrink its steps until they underflowed (an error); now the tolerances are
    # floored at the dtype's resolution and the result is the float32 one to that precision.
    spec = flows.CNF(3, 2, hidden_features=[16])
    params = spec.init(torch.Generator().manual_seed(0))
    x, c = _inputs()
    expected = spec.apply(params, c).log_prob(x)
    low = {k: v.to(dtype) for k, v in flatten_names(params).items()}
    got = spec.apply(low, c.to(dtype)).log_prob(x.to(dtype))
    assert got.dtype == dtype
    assert_close(got.float(), expected, atol=0.15, rtol=0.05, what=f"CNF in {dtype}")
