r"""Per-sample flow parameters laid out samples-last (``unravel(spec, flat, dim=0)`` and
``vmap(..., in_dims=-1)``): the same log-densities as samples-first, eagerly and compiled."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

import lazydist_functional.meta as M
from lazydist_functional.checks import ShapeError
from lazydist_functional.flows import MAF


@pytest.fixture
def case():
    spec = MAF(2, 0, transforms=2, hidden_features=[8])
    g = torch.Generator().manual_seed(0)
    flat = 0.1 * torch.randn(6, M.param_count(spec), generator=g)
    x = torch.randn(6, 2, generator=g)
    return spec, flat, x


def _log_prob(spec, in_dim):
    return vmap(lambda p, xi: spec.apply(p).log_prob(xi), in_dims=(in_dim, 0))


def test_samples_last_equals_samples_first(case):
    spec, flat, x = case
    first = _log_prob(spec, 0)(M.unravel(spec, flat), x)
    last = _log_prob(spec, -1)(M.unravel(spec, flat.mT.contiguous(), dim=0), x)
    loop = torch.stack([spec.apply(M.unravel(spec, flat[i])).log_prob(x[i]) for i in range(6)])
    assert torch.allclose(first, loop, atol=1e-5) and torch.allclose(last, loop, atol=1e-5)


def test_samples_last_compiles(case):
    spec, flat, x = case
    fn = torch.compile(_log_prob(spec, -1), backend="aot_eager", fullgraph=True)
    out = fn(M.unravel(spec, flat.mT.contiguous(), dim=0), x)
    assert torch.allclose(out, _log_prob(spec, 0)(M.unravel(spec, flat), x), atol=1e-5)


def test_wrong_size_names_the_axis(case):
    spec, flat, _ = case
    with pytest.raises(ShapeError, match=r"expected a vector of \d+ parameters, got 6 \(dim 0"):
        M.unravel(spec, flat, dim=0)
