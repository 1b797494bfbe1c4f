r"""``MultivariateNormal.log_prob`` eagerly: the unrolled forward substitution (small D) and
LAPACK's triangular solve (larger D) both equal ``torch.distributions``, gradients included,
also under ``vmap`` over parameter sets."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as td
from torch.func import grad, vmap

from lazydist_functional.distributions.mixture import _UNROLLED_SOLVE_EAGER, MultivariateNormal


def _factor(d, gen, batch=()):
    a = torch.randn(*batch, d, d, generator=gen, dtype=torch.float64)
    return torch.linalg.cholesky(a @ a.mT + d * torch.eye(d, dtype=torch.float64))


@pytest.mark.parametrize("d", [1, 5, _UNROLLED_SOLVE_EAGER, _UNROLLED_SOLVE_EAGER + 2])
def test_log_prob_and_gradients_match_torch(d):
    gen = torch.Generator().manual_seed(d)
    loc, L = torch.randn(3, d, generator=gen, dtype=torch.float64), _factor(d, gen, (3,))
    x = torch.randn(7, 3, d, generator=gen, dtype=torch.float64)
    ours = MultivariateNormal(loc, scale_tril=L).log_prob(x)
    ref = td.MultivariateNormal(loc, scale_tril=L).log_prob(x)
    assert torch.allclose(ours, ref, atol=1e-10)
    g = grad(lambda lc, ll: MultivariateNormal(lc, scale_tril=ll).log_prob(x).sum(), argnums=(0, 1))(loc, L)
    g_ref = torch.autograd.grad(td.MultivariateNormal(loc.requires_grad_(), scale_tril=L.requires_grad_()).log_prob(x).sum(), (loc, L))
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-9)


def test_vmap_over_parameter_sets_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    loc, L = torch.randn(4, 2, 5, generator=gen, dtype=torch.float64), _factor(5, gen, (4, 2))
    x = torch.randn(4, 6, 2, 5, generator=gen, dtype=torch.float64)
    out = vmap(lambda lc, ll, xx: MultivariateNormal(lc, scale_tril=ll).log_prob(xx))(loc, L, x)
    loop = torch.stack([td.MultivariateNormal(loc[k], scale_tril=L[k]).log_prob(x[k]) for k in range(4)])
    assert torch.allclose(out, loop, atol=1e-10)
