r"""Element-wise affine transforms."""

from __future__ import annotations

__all__ = ["MonotonicAffineTransform", "AdditiveTransform"]

import math

import torch
from torch import Tensor

from ..pytree import register_pytree_class
from .base import FunctionalTransform
from .softclip import soft_bound


@register_pytree_class(children=("shift", "unconstrained_scale"), static=("slope",))
class MonotonicAffineTransform(FunctionalTransform):
    r"""Element-wise :math:`f(x) = \exp(s) x + b` with a soft-bounded log-scale.

    .. math:: s = \frac{a}{1 + |a / \log \lambda|} \in (\log \lambda, -\log \lambda)

    where :math:`a` is the unconstrained ``scale`` and :math:`\lambda` the minimum
    ``slope``, so the slope stays in :math:`(\lambda, 1 / \lambda)`.

    Example:
        >>> t = MonotonicAffineTransform(torch.tensor(1.0), torch.tensor(0.5))
        >>> x = torch.tensor([0.0, 2.0])
        >>> torch.allclose(t.inv(t(x)), x)
        True
    """

    sign = +1  # increasing, element-wise

    def __init__(self, shift: Tensor, scale: Tensor, slope: float = 1e-3) -> None:
        self.shift = shift
        self.unconstrained_scale = scale  # a
        self.slope = float(slope)

    @property
    def log_scale(self) -> Tensor:
        r"""The soft-bounded log-scale :math:`s` (Zuko's attribute of that name)."""

        return soft_bound(self.unconstrained_scale, -math.log(self.slope))

    @property
    def scale(self) -> Tensor:
        r"""The multiplier :math:`e^s` (Zuko's attribute of that name; the argument ``scale``
        is the unconstrained :math:`a`, kept as :attr:`unconstrained_scale`)."""

        return self.log_scale.exp()

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.log_scale
        y = x * log_scale.exp() + self.shift
        return y, _expanded(log_scale, y.shape)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.log_scale
        x = (y - self.shift) * torch.exp(-log_scale)
        return x, _expanded(-log_scale, x.shape)


def _expanded(t: Tensor, shape: torch.Size) -> Tensor:
    r"""``t`` expanded to ``shape``; ``t`` itself when it has that shape (an ``expand`` to
    the same shape is still one operation, two under ``vmap``)."""

    return t if t.shape == shape else t.expand(shape)


@register_pytree_class(children=("shift",))
class AdditiveTransform(FunctionalTransform):
    r"""Element-wise :math:`f(x) = x + b` (volume preserving, as in NICE)."""

    sign = +1  # increasing, element-wise

    def __init__(self, shift: Tensor) -> None:
        self.shift = shift

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x + self.shift
        return y, torch.zeros_like(y)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = y - self.shift
        return x, torch.zeros_like(x)
