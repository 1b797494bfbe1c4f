r"""Keyed standard gamma draws (Marsaglia-Tsang with a fixed number of tries)."""

from __future__ import annotations

__all__ = ["standard_gamma"]

import torch
from torch import Size, Tensor

from .draws import Draws


def standard_gamma(draws: Draws, sample_shape: Size, alpha: Tensor, tries: int = 16) -> Tensor:
    r""":math:`\mathrm{Gamma}(\alpha, 1)` draws of shape ``sample_shape + alpha.shape``.

    Marsaglia and Tsang (2000): with :math:`a = \alpha` (or :math:`\alpha + 1` when
    :math:`\alpha < 1`), :math:`d = a - 1/3`, :math:`c = 1/\sqrt{9d}`, a normal :math:`z`
    and :math:`v = (1 + cz)^3` are accepted when :math:`\log u < z^2/2 + d - dv + d \log v`,
    giving :math:`dv`; :math:`\alpha < 1` multiplies by :math:`u'^{1/\alpha}`. Each
    position runs ``tries`` candidates at once (``fold_in(k, 0)`` normals, ``fold_in(k, 1)``
    uniforms, ``fold_in(k, 2)`` for the boost) and keeps the first accepted (acceptance
    is above 0.95 per try, so all 16 fail with probability below :math:`10^{-20}`: then
    the last candidate is kept). The draw is reparameterized by the implicit gradient
    :math:`\partial x / \partial \alpha = -\partial_\alpha F(x; \alpha) / p(x; \alpha)`
    (``torch._standard_gamma_grad``), as ``torch._standard_gamma`` is.

    Example:
        >>> from lazydist_functional import random
        >>> from lazydist_functional.distributions.draws import KeyedDraws
        >>> x = standard_gamma(KeyedDraws(random.key(0)), Size([20000]), torch.tensor(0.5))
        >>> round(x.mean().item(), 1)
        0.5
    """

    a = alpha.detach()
    boost = a < 1
    a1 = torch.where(boost, a + 1, a)
    d = a1 - 1 / 3
    c = torch.rsqrt(9 * d)
    candidates = Size((tries, *sample_shape))
    z = draws.part(0).normal(candidates, a.shape, a)
    u = draws.part(1).uniform(candidates, a.shape, a, low=torch.finfo(a.dtype).tiny)
    v = (1 + c * z) ** 3
    v_pos = torch.clamp_min(v, torch.finfo(a.dtype).tiny)
    accept = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v_pos + d * torch.log(v_pos))
    first = torch.where(accept.any(dim=0), torch.argmax(accept.to(torch.int8), dim=0), tries - 1)
    x = d * torch.gather(v_pos, 0, first.unsqueeze(0)).squeeze(0)
    ub = draws.part(2).uniform(Size(sample_shape), a.shape, a, low=torch.finfo(a.dtype).tiny)
    x = torch.where(boost, x * ub ** (1 / a), x)
    x = torch.clamp_min(x, torch.finfo(a.dtype).tiny)
    full = alpha.expand(x.shape)
    grad = torch.nan_to_num(torch._standard_gamma_grad(full.detach(), x), posinf=0.0, neginf=0.0)
    return x + (full - full.detach()) * grad
