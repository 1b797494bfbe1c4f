r"""The standard normal CDF and quantile far into both tails, in float32 as in float64:
:math:`\log \Phi`, :math:`\Phi^{-1}` (half precision through float32) and
:math:`\Phi^{-1}(e^\ell)` for :math:`e^\ell` below the smallest float.

Example:
    >>> u = torch.tensor([-40.0, -3.0, 2.0])
    >>> torch.allclose(ndtri_exp(log_ndtr(u[:2])), u[:2], atol=1e-4)
    True
"""

from __future__ import annotations

__all__ = ["LOG_HALF", "log_ndtr", "log_ndtr_asymptotic", "ndtri", "ndtri_exp"]

import math

import torch
from torch import Tensor

LOG_HALF = math.log(0.5)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_ndtr_asymptotic(u: Tensor) -> Tensor:
    r""":math:`\log \Phi(u)` for :math:`u \le -8` by the asymptotic series
    :math:`\log \Phi(u) = -\frac{u^2}{2} - \log(-u \sqrt{2\pi}) + \log(1 - u^{-2} + 3u^{-4} - 15u^{-6})`."""

    w = 1 / (u * u)
    return -u * u / 2 - torch.log(-u) - _HALF_LOG_2PI + torch.log1p(w * (-1 + w * (3 - 15 * w)))


def log_ndtr(u: Tensor) -> Tensor:
    r""":math:`\log \Phi(u)`, stable in both tails, from ``erfc`` (fast, with a ``vmap``
    batching rule, unlike ``torch.special.log_ndtr``) and the asymptotic series below -8."""

    far = u < -8
    direct = torch.log(0.5 * torch.special.erfc(-torch.where(far, torch.zeros_like(u), u) / math.sqrt(2)))
    return torch.where(far, log_ndtr_asymptotic(torch.where(far, u, torch.full_like(u, -8.0))), direct)


def ndtri(p: Tensor) -> Tensor:
    r""":math:`\Phi^{-1}(p)`; in float32 for half-precision inputs (torch has no half
    ``ndtri`` kernel on CPU), cast back (a static dtype choice)."""

    if p.dtype in (torch.bfloat16, torch.float16):
        return torch.special.ndtri(p.float()).to(p.dtype)
    return torch.special.ndtri(p)


def ndtri_exp(log_p: Tensor) -> Tensor:
    r""":math:`\Phi^{-1}(e^{\ell})` for :math:`\ell \le \log \frac12`, accurate for very small
    :math:`e^\ell` (where :math:`e^\ell` underflows): there, two Newton steps on the asymptotic
    :math:`\log \Phi(z) = \ell` from :math:`z_0 = -\sqrt{-2\ell - \log(-2\ell) - \log 2\pi}`."""

    tail = log_p < -40.0
    direct = ndtri(torch.exp(torch.where(tail, torch.full_like(log_p, LOG_HALF), log_p)))
    L = torch.where(tail, log_p, torch.full_like(log_p, -50.0))
    z = -torch.sqrt(-2 * L - torch.log(-2 * L) - 2 * _HALF_LOG_2PI)
    for _ in range(2):
        # d/dz log Phi(z) ~ phi(z) / Phi(z) ~ -z (1 + 1/z^2) in the far tail
        z = z - (log_ndtr_asymptotic(z) - L) / (-z - 1 / z)
    return torch.where(tail, z, direct)
