r"""Diagonal normal distribution."""

from __future__ import annotations

__all__ = ["DiagNormal"]

import math

import torch
from torch import Size, Tensor
from torch.distributions import Normal

from ..pytree import register_pytree_class
from .base import IndependentBase
from .draws import Draws

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@register_pytree_class(children=("loc", "scale"), static=("reinterpreted_batch_ndims",))
class DiagNormal(IndependentBase):
    r"""Normal distribution with diagonal covariance over the ``ndims`` rightmost dims:
    a :class:`torch.distributions.Independent` over :class:`~torch.distributions.Normal`
    (``base_dist``) whose leaves are ``loc`` and ``scale``.

    .. math:: \log p(x) = \sum_i -\frac{(x_i - \mu_i)^2}{2 \sigma_i^2} - \log \sigma_i - \frac{1}{2}\log 2\pi

    Example:
        >>> d = DiagNormal(torch.zeros(3), torch.ones(3))
        >>> d.event_shape, d.sample((2,)).shape, isinstance(d, torch.distributions.Independent)
        (torch.Size([3]), torch.Size([2, 3]), True)
        >>> d.base_dist
        Normal(loc: torch.Size([3]), scale: torch.Size([3]))
    """

    _params = ("loc", "scale")
    _base_class = Normal

    def __init__(self, loc: Tensor, scale: Tensor, ndims: int = 1) -> None:
        self.loc, self.scale = torch.broadcast_tensors(torch.as_tensor(loc), torch.as_tensor(scale))
        self.reinterpreted_batch_ndims = int(ndims)

    def __repr__(self) -> str:
        return "Diag" + repr(self.base_dist)

    @property
    def mean(self) -> Tensor:
        return self.loc.expand(self._shape)

    @property
    def mode(self) -> Tensor:
        return self.mean

    @property
    def stddev(self) -> Tensor:
        return self.scale.expand(self._shape)

    @property
    def variance(self) -> Tensor:
        return self.stddev**2

    def log_prob(self, x: Tensor) -> Tensor:
        z = (x - self.loc) / self.scale
        n = self.reinterpreted_batch_ndims
        if n and z.shape[z.ndim - n :] == self.scale.shape[self.scale.ndim - n :]:
            # The normalizer sum_i log sigma_i + log sqrt(2 pi) is summed over the event on
            # sigma's own shape, apart from the quadratic term: once per parameter row rather
            # than once per value, and, in a compiled vmap with unbatched sigma, one fused
            # reduction instead of a (N, D) buffer of masked vector loops (issue 15).
            return self._sum_event(-0.5 * z**2) - self._sum_event(torch.log(self.scale) + _LOG_SQRT_2PI)
        return self._sum_event(-0.5 * z**2 - torch.log(self.scale) - _LOG_SQRT_2PI)

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        return self.loc + self.scale * draws.normal(sample_shape, self._shape, self.loc)

    def entropy(self) -> Tensor:
        h = 0.5 + _LOG_SQRT_2PI + torch.log(self.scale).expand(self._shape)
        return self._sum_event(h)
