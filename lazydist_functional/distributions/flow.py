r"""Normalizing flow: a base distribution pushed through an invertible transform."""

from __future__ import annotations

__all__ = ["NormalizingFlow"]

import torch
from torch import Size, Tensor
from torch.distributions import Distribution, Transform

from ..checks import check_dtype, check_event
from ..pytree import register_pytree_class
from ..transforms.base import sum_rightmost
from .base import FunctionalDistribution


def _float_dtype(d: object) -> torch.dtype | None:
    r"""The dtype of a distribution's first floating-point leaf (static: reads ``.dtype`` only)."""

    for name in getattr(type(d), "_pytree_children", ()):
        value = getattr(d, name, None)
        if isinstance(value, Tensor) and value.is_floating_point():
            return value.dtype
        if isinstance(value, Distribution):
            found = _float_dtype(value)
            if found is not None:
                return found
    return None


@register_pytree_class(children=("transform", "base"))
class NormalizingFlow(FunctionalDistribution):
    r"""Distribution of :math:`X` with :math:`Z = f(X) \sim p(Z)`.

    .. math:: \log p(X = x) = \log p(Z = f(x)) + \log \left| \det J_f(x) \right|

    Sampling maps :math:`z \sim p(Z)` through :math:`f^{-1}`. Batch shape is the base's
    batch shape (the context batch when conditional), event shape the base's.

    References:
        | Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021)
        | https://arxiv.org/abs/1912.02762

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> from lazydist_functional.transforms import MonotonicAffineTransform
        >>> f = MonotonicAffineTransform(torch.zeros(2), torch.zeros(2))
        >>> d = NormalizingFlow(f, DiagNormal(torch.zeros(2), torch.ones(2)))
        >>> d.log_prob(torch.zeros(2))
        tensor(-1.8379)
    """

    def __init__(self, transform: Transform, base: Distribution) -> None:
        self.transform = transform
        self.base = base

    def __repr__(self) -> str:
        return f"NormalizingFlow(\n  (transform): {self.transform!r}\n  (base): {self.base!r}\n)".replace(
            "\n", "\n"
        )

    @property
    def _reinterpreted(self) -> int:
        return max(len(self.base.event_shape) - self.transform.codomain.event_dim, 0)

    @property
    def batch_shape(self) -> Size:
        return self.base.batch_shape

    @property
    def event_shape(self) -> Size:
        return self.transform.inverse_shape(self.base.event_shape)

    def expand(self, batch_shape: Size, _instance: object = None) -> NormalizingFlow:
        return NormalizingFlow(self.transform, self.base.expand(batch_shape))

    def log_prob(self, x: Tensor) -> Tensor:
        check_event(x, self.event_shape)
        dtype = _float_dtype(self.base)
        if dtype is not None:
            check_dtype("x", x, dtype)
        z, ladj = self.transform.call_and_ladj(x)
        return self.base.log_prob(z) + sum_rightmost(ladj, self._reinterpreted)

    def rsample(self, sample_shape: Size = Size()) -> Tensor:
        z = self.base.rsample(sample_shape) if self.base.has_rsample else self.base.sample(sample_shape)
        return self.transform.inv(z)

    def rsample_and_log_prob(self, sample_shape: Size = Size()) -> tuple[Tensor, Tensor]:
        r"""Samples :math:`x = f^{-1}(z)` and returns :math:`\log p(x)` from the same pass."""

        z = self.base.rsample(sample_shape) if self.base.has_rsample else self.base.sample(sample_shape)
        x, ladj = self.transform.inv.call_and_ladj(z)
        return x, self.base.log_prob(z) - sum_rightmost(ladj, self._reinterpreted)

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)
