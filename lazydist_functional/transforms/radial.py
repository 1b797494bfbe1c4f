r"""Radial transform (Rezende & Mohamed, 2015), with an exact inverse."""

from __future__ import annotations

__all__ = ["RadialTransform"]

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import constraints

from ..pytree import register_pytree_class
from .base import FunctionalTransform, check_input


def _minus_one(x: Tensor) -> Tensor:
    r""":math:`D - 1` for inputs of :math:`D` features, as a 0-d tensor: under
    ``torch.compile(vmap(...), dynamic=True)`` a symbolic size times a batched tensor is
    refused by the batching rule ("x must be Tensor or scalar, got SymInt")."""

    return torch.full((), x.shape[-1] - 1, dtype=x.dtype, device=x.device)


@register_pytree_class(children=("z0", "alpha", "beta"))
class RadialTransform(FunctionalTransform):
    r"""Radial transform :math:`f(z) = z + \frac{\beta}{\alpha + r} (z - z_0)`,
    :math:`r = |z - z_0|`, on :math:`\mathbb{R}^D`.

    The raw ``alpha`` and ``beta`` are mapped to :math:`\alpha = \log(1 + e^{\alpha'}) > 0`
    and :math:`\beta = -\alpha + \log(1 + e^{\beta'}) > -\alpha`, the paper's invertibility
    condition, whatever their values. With :math:`h = 1 / (\alpha + r)`,

    .. math:: \log |\det J_f(z)| = (D - 1) \log(1 + \beta h) + \log(1 + \beta h + \beta h' r)
        = (D - 1) \log\left(1 + \frac{\beta}{\alpha + r}\right)
        + \log\left(1 + \frac{\alpha \beta}{(\alpha + r)^2}\right).

    Inverse: :math:`y - z_0` is parallel to :math:`z - z_0`, and the radius solves
    :math:`\rho = |y - z_0| = r (1 + \beta / (\alpha + r))`, strictly increasing in
    :math:`r \ge 0`. This one-dimensional equation is the quadratic
    :math:`r^2 + (\alpha + \beta - \rho) r - \alpha \rho = 0`, whose non-negative root is
    taken in closed form (the cancellation-free expression of either sign of
    :math:`q = \alpha + \beta - \rho`), exact to rounding; then
    :math:`z = z_0 + (y - z_0) / (1 + \beta / (\alpha + r))`.

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Arguments:
        z0: the centre :math:`z_0`, shape :math:`(*, D)`.
        alpha: the raw :math:`\alpha'`, shape :math:`(*)`.
        beta: the raw :math:`\beta'`, shape :math:`(*)`.

    Example:
        >>> t = RadialTransform(torch.zeros(2), torch.tensor(0.5), torch.tensor(-3.0))
        >>> z = torch.randn(4, 2)
        >>> torch.allclose(t.inv(t(z)), z, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, z0: Tensor, alpha: Tensor, beta: Tensor) -> None:
        self.z0 = z0
        self.alpha = alpha
        self.beta = beta

    def _coefficients(self) -> tuple[Tensor, Tensor]:
        alpha = F.softplus(self.alpha)
        return alpha, F.softplus(self.beta) - alpha

    def _check(self, x: Tensor) -> Tensor:
        check_input(self, x, (self.z0.shape[-1],), self.z0.shape[:-1])
        return x

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z)
        alpha, beta = self._coefficients()
        d = z - self.z0
        r = torch.linalg.vector_norm(d, dim=-1)
        bh = beta / (alpha + r)
        ladj = torch.log1p(bh) * _minus_one(z) + torch.log1p(alpha * beta / (alpha + r) ** 2)
        return z + bh.unsqueeze(-1) * d, ladj

    def _radius(self, rho: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
        q = alpha + beta - rho
        disc = torch.sqrt(q * q + 4 * alpha * rho)
        positive = q > 0
        # q > 0: r = 2 alpha rho / (disc + q); q <= 0: r = (disc - q) / 2 (no cancellation).
        return torch.where(positive, 2 * alpha * rho / torch.where(positive, disc + q, 1.0), (disc - q) / 2)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check(y)
        alpha, beta = self._coefficients()
        d = y - self.z0
        r = self._radius(torch.linalg.vector_norm(d, dim=-1), alpha, beta)
        bh = beta / (alpha + r)
        ladj = torch.log1p(bh) * _minus_one(y) + torch.log1p(alpha * beta / (alpha + r) ** 2)
        return self.z0 + d / (1 + bh).unsqueeze(-1), -ladj
