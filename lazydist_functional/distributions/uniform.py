r"""Uniform distribution over a box."""

from __future__ import annotations

__all__ = ["BoxUniform"]

import torch
from torch import Size, Tensor

from ..pytree import register_pytree_class
from .base import FunctionalDistribution


@register_pytree_class(children=("lower", "upper"), static=("ndims",))
class BoxUniform(FunctionalDistribution):
    r"""Uniform distribution over the box :math:`\prod_i [l_i, u_i)`.

    .. math:: \log p(x) = -\sum_i \log (u_i - l_i) \quad \text{inside, } -\infty \text{ outside}

    Example:
        >>> d = BoxUniform(-torch.ones(2), torch.ones(2))
        >>> d.log_prob(torch.zeros(2))
        tensor(-1.3863)
    """

    def __init__(self, lower: Tensor, upper: Tensor, ndims: int = 1) -> None:
        self.lower = torch.as_tensor(lower)
        self.upper = torch.as_tensor(upper)
        self.ndims = int(ndims)

    @property
    def _shape(self) -> Size:
        if self.lower.shape == self.upper.shape:
            return self.lower.shape
        return torch.broadcast_shapes(self.lower.shape, self.upper.shape)

    @property
    def batch_shape(self) -> Size:
        shape = self._shape
        return shape[: len(shape) - self.ndims]

    @property
    def event_shape(self) -> Size:
        shape = self._shape
        return shape[len(shape) - self.ndims :]

    @property
    def mean(self) -> Tensor:
        return ((self.lower + self.upper) / 2).expand(self._shape)

    def expand(self, batch_shape: Size, _instance: object = None) -> BoxUniform:
        shape = Size(batch_shape) + self.event_shape
        return BoxUniform(self.lower.expand(shape), self.upper.expand(shape), self.ndims)

    def log_prob(self, x: Tensor) -> Tensor:
        inside = (x >= self.lower) & (x < self.upper)
        lp = torch.where(inside, -torch.log(self.upper - self.lower), torch.full_like(x, -torch.inf))
        return lp.sum(dim=tuple(range(-self.ndims, 0))) if self.ndims else lp

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        shape = Size(sample_shape) + self._shape
        u = torch.rand(shape, dtype=self.lower.dtype, device=self.lower.device)
        return self.lower + (self.upper - self.lower) * u

    def entropy(self) -> Tensor:
        h = torch.log(self.upper - self.lower).expand(self._shape)
        return h.sum(dim=tuple(range(-self.ndims, 0))) if self.ndims else h
