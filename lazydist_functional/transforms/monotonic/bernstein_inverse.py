r"""The inverse of a Bernstein polynomial on its proven bracket: safeguarded Newton in unit
coordinates.

For increasing coefficients :math:`\theta_0 < \dots < \theta_M` the polynomial

.. math:: p(t) = \sum_{i=0}^{M} \binom{M}{i} t^i (1 - t)^{M - i} \theta_i

is increasing on :math:`[0, 1]`, so for a target :math:`p(\epsilon) \le y \le p(1 - \epsilon)`
the root lies in :math:`[\epsilon, 1 - \epsilon]`: the bracket is *proven* from the start
(no probing, no widening, unlike the generic
:func:`~lazydist_functional.roots.newton_bisection`). Each iteration evaluates the basis once,
in log space (:math:`\exp(\log\binom{M}{i} + i \log t + (M - i) \log(1 - t))`), and

.. math:: p(t) = \sum_i b_i \theta_i, \qquad
    p'(t) = \frac{1}{1 - t} \sum_{i<M} b_i (M - i) (\theta_{i+1} - \theta_i)

(since :math:`M \binom{M-1}{i} t^i (1-t)^{M-1-i} = (M - i) b_i / (1 - t)`; the weights
:math:`(M - i)(\theta_{i+1} - \theta_i)` are computed once per solve). The bracket is
narrowed to the side of the root at every evaluated point, and a Newton step that leaves it
is replaced by bisection, so every iteration keeps the root bracketed. The number of
iterations is fixed (no data-dependent control flow: ``vmap``, ``jacrev`` and
``torch.compile`` apply).

Example:
    >>> theta = torch.tensor([[-1.0, 0.0, 2.0, 3.0]])  # increasing
    >>> y = torch.tensor([1.0])
    >>> t = solve_unit(y, theta, t0=torch.tensor([0.5]), eps=1e-6, iterations=8)
    >>> b = torch.tensor([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3])
    >>> bool(((b * theta[0]).sum() - 1.0).abs() < 1e-5)
    True
"""

from __future__ import annotations

__all__ = ["solve_unit"]

import functools
import math

import torch
from torch import Tensor


@functools.lru_cache(maxsize=64)
def _constants(order: int) -> tuple[tuple[float, ...], ...]:
    r"""The powers :math:`i` and :math:`M - i` and :math:`\log \binom{M}{i}`, :math:`i = 0..M`
    (Python floats)."""

    lgamma = math.lgamma
    return (
        tuple(float(k) for k in range(order + 1)),
        tuple(float(order - k) for k in range(order + 1)),
        tuple(lgamma(order + 1) - lgamma(k + 1) - lgamma(order - k + 1) for k in range(order + 1)),
    )


def solve_unit(y: Tensor, theta: Tensor, t0: Tensor, eps: float, iterations: int) -> Tensor:
    r"""Solves :math:`p(t) = y` for :math:`t \in [\epsilon, 1 - \epsilon]` by ``iterations``
    bracketed Newton steps from ``t0`` (clamped into the bracket). ``theta``: the increasing
    coefficients, shape :math:`(*, M + 1)`, broadcastable against ``y`` (detached here: the
    result is the root, without gradients). Targets beyond :math:`p(\epsilon)` or
    :math:`p(1 - \epsilon)` converge to that end."""

    theta = theta.detach()
    y = y.detach()
    M = theta.shape[-1] - 1
    batch = torch.broadcast_shapes(y.shape, theta.shape[:-1])
    i, rest, log_binom = torch.tensor(_constants(M), dtype=y.dtype, device=y.device)
    theta = theta.contiguous()
    weights = (theta[..., 1:] - theta[..., :-1]) * rest[:-1]
    lo = torch.full_like(t0, eps).expand(batch)
    hi = torch.full_like(t0, 1 - eps).expand(batch)
    t = torch.clamp(t0.detach(), eps, 1 - eps).expand(batch)
    for _ in range(iterations):
        s = 1 - t
        log_t, log_s = torch.log(t)[..., None], torch.log(s)[..., None]
        basis = torch.exp(torch.addcmul(torch.addcmul(log_binom, i, log_t), rest, log_s))
        r = (basis * theta).sum(dim=-1) - y
        slope = (basis[..., :-1] * weights).sum(dim=-1) / s
        below = r < 0
        lo = torch.where(below, t, lo)
        hi = torch.where(below, hi, t)
        step = t - r / slope
        t = torch.where((step >= lo) & (step <= hi), step, (lo + hi) * 0.5)
    return t
