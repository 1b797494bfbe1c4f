r"""Uniform distribution over a box."""

from __future__ import annotations

__all__ = ["BoxUniform"]

import torch
from torch import Size, Tensor
from torch.distributions import Uniform

from ..pytree import register_pytree_class
from .base import IndependentBase
from .draws import Draws


@register_pytree_class(children=("lower", "upper"), static=("reinterpreted_batch_ndims",))
class BoxUniform(IndependentBase):
    r"""Uniform distribution over the box :math:`\prod_i [l_i, u_i)`: a
    :class:`torch.distributions.Independent` over :class:`~torch.distributions.Uniform`
    (``base_dist``) whose leaves are ``lower`` and ``upper``.

    .. math:: \log p(x) = -\sum_i \log (u_i - l_i) \quad \text{inside, } -\infty \text{ outside}

    Example:
        >>> d = BoxUniform(-torch.ones(2), torch.ones(2))
        >>> d.log_prob(torch.zeros(2)), d.base_dist.high
        (tensor(-1.3863), tensor([1., 1.]))
    """

    _params = ("lower", "upper")
    _base_class = Uniform

    def __init__(self, lower: Tensor, upper: Tensor, ndims: int = 1) -> None:
        self.lower, self.upper = torch.broadcast_tensors(torch.as_tensor(lower), torch.as_tensor(upper))
        self.reinterpreted_batch_ndims = int(ndims)

    def __repr__(self) -> str:
        return "Box" + repr(self.base_dist)

    @property
    def mean(self) -> Tensor:
        return ((self.lower + self.upper) / 2).expand(self._shape)

    def log_prob(self, x: Tensor) -> Tensor:
        inside = (x >= self.lower) & (x < self.upper)
        lp = torch.where(inside, -torch.log(self.upper - self.lower), torch.full_like(x, -torch.inf))
        return self._sum_event(lp)

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        return self.lower + (self.upper - self.lower) * draws.uniform(sample_shape, self._shape, self.lower)

    def entropy(self) -> Tensor:
        h = torch.log(self.upper - self.lower).expand(self._shape)
        return self._sum_event(h)
