r"""Mixed precision: inside ``torch.autocast`` layers return bfloat16 on purpose, so the
dtype checks step aside and values mix as in torch (and Zuko); outside, a float64 value
given to a float32 flow is still a clear error."""

import pytest
import torch

import lazydist_functional.adapters as A
from lazydist_functional.checks import InputTypeError


@pytest.mark.parametrize("name", ["MAF", "NSF", "GF", "RealNVP", "NAF"])
def test_log_prob_and_backward_under_cpu_autocast(name):
    torch.manual_seed(0)
    flow = getattr(A.flows, name)(3, 2)
    c, x = torch.randn(8, 2), torch.randn(8, 3)
    exact = flow(c).log_prob(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = flow(c).log_prob(x)
    assert torch.isfinite(mixed).all()
    assert (mixed.float() - exact).abs().max() < 0.1 * (1 + exact.abs().max())
    mixed.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in flow.parameters() if p.grad is not None)
    with pytest.raises(InputTypeError, match="float64"):
        flow(c).log_prob(x.double())
