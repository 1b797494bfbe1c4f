r"""Mixtures and full-covariance normals."""

from __future__ import annotations

__all__ = ["Mixture", "MultivariateNormal"]

import math

import torch
from torch import Size, Tensor
from torch.distributions import Distribution

from ..pytree import register_pytree_class
from .base import FunctionalDistribution


@register_pytree_class(children=("loc", "scale_tril"))
class MultivariateNormal(FunctionalDistribution):
    r""":math:`\mathcal{N}(\mu, L L^\top)` parametrized by a lower-triangular :math:`L`.

    .. math:: \log p(x) = -\tfrac12 \| L^{-1}(x - \mu) \|^2 - \sum_i \log |L_{ii}| - \tfrac{D}{2} \log 2\pi

    Example:
        >>> d = MultivariateNormal(torch.zeros(2), torch.eye(2))
        >>> d.log_prob(torch.zeros(2))
        tensor(-1.8379)
    """

    def __init__(self, loc: Tensor, scale_tril: Tensor) -> None:
        self.loc = loc
        self.scale_tril = scale_tril

    @property
    def _batch(self) -> Size:
        return torch.broadcast_shapes(self.loc.shape[:-1], self.scale_tril.shape[:-2])

    @property
    def batch_shape(self) -> Size:
        return self._batch

    @property
    def event_shape(self) -> Size:
        return self.loc.shape[-1:]

    @property
    def mean(self) -> Tensor:
        return self.loc.expand(self._batch + self.event_shape)

    def expand(self, batch_shape: Size, _instance: object = None) -> MultivariateNormal:
        d = self.loc.shape[-1]
        return MultivariateNormal(self.loc.expand(*batch_shape, d), self.scale_tril.expand(*batch_shape, d, d))

    def log_prob(self, x: Tensor) -> Tensor:
        diff = x - self.loc
        batch = torch.broadcast_shapes(diff.shape[:-1], self.scale_tril.shape[:-2])
        L = self.scale_tril.expand(*batch, *self.scale_tril.shape[-2:])
        z = torch.linalg.solve_triangular(L, diff.expand(*batch, diff.shape[-1]).unsqueeze(-1), upper=False)
        half_logdet = torch.log(torch.abs(torch.diagonal(L, dim1=-2, dim2=-1))).sum(-1)
        return -0.5 * z.squeeze(-1).pow(2).sum(-1) - half_logdet - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        shape = Size(sample_shape) + self._batch + self.event_shape
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + torch.matmul(self.scale_tril, eps.unsqueeze(-1)).squeeze(-1)


@register_pytree_class(children=("base", "logits"))
class Mixture(FunctionalDistribution):
    r"""Mixture :math:`p(x) = \sum_i w_i \, p_i(x)` with :math:`w = \mathrm{softmax}(\text{logits})`.

    ``base`` is a batch of component distributions whose last batch dimension indexes
    the components. Sampling draws the component by Gumbel-max (out-of-place noise,
    so ``vmap(randomness="different")`` works); it is not reparameterized.

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> d = Mixture(DiagNormal(torch.randn(3, 2), torch.ones(3, 2)), torch.zeros(3))
        >>> d.event_shape, d.sample((4,)).shape
        (torch.Size([2]), torch.Size([4, 2]))
    """

    has_rsample = False

    def __init__(self, base: Distribution, logits: Tensor) -> None:
        self.base = base
        self.logits = logits

    @property
    def batch_shape(self) -> Size:
        return self.base.batch_shape[:-1]

    @property
    def event_shape(self) -> Size:
        return self.base.event_shape

    def expand(self, batch_shape: Size, _instance: object = None) -> Mixture:
        return Mixture(self.base.expand(Size(batch_shape) + self.base.batch_shape[-1:]), self.logits)

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.unsqueeze(-(len(self.event_shape) + 1))
        return torch.logsumexp(torch.log_softmax(self.logits, dim=-1) + self.base.log_prob(x), dim=-1)

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        with torch.no_grad():
            shape = Size(sample_shape)
            x = self.base.sample(shape)  # (*shape, *batch, K, *event)
            logits = self.logits.expand(*shape, *self.batch_shape, self.logits.shape[-1])
            gumbel = -torch.log(-torch.log(torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)))
            k = torch.argmax(logits + gumbel, dim=-1)
            index = k.reshape(*k.shape, 1, *([1] * len(self.event_shape)))
            index = index.expand(*k.shape, 1, *self.event_shape)
            return x.gather(len(k.shape), index).squeeze(len(k.shape))

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        raise NotImplementedError("Mixture is not reparameterizable; use sample()")
