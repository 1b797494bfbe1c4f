r"""Soft clipping :math:`\mathbb{R} \to (-B, B)`."""

from __future__ import annotations

__all__ = ["SoftclipTransform", "soft_bound"]

import torch
from torch import Tensor
from torch.distributions import constraints

from ..pytree import register_pytree_class
from .base import FunctionalTransform, bound_of


def soft_bound(x: Tensor, bound: float | Tensor) -> Tensor:
    r"""The soft bound :math:`x / (1 + |x / B|)`, a smooth increasing map of the reals
    onto :math:`(-B, B)` (the library's one soft clip: transforms, spline knots, scales).

    Example:
        >>> soft_bound(torch.tensor([-2.0, 0.0, 2.0]), 2.0)
        tensor([-1.,  0.,  1.])
    """

    return x / (1 + torch.abs(x / bound))


@register_pytree_class(children=(), static=("bound",))
class SoftclipTransform(FunctionalTransform):
    r"""Maps :math:`\mathbb{R}` onto :math:`(-B, B)`.

    .. math:: f(x) = \frac{x}{1 + |x / B|}, \qquad f^{-1}(y) = \frac{y}{1 - |y / B|},
        \qquad \log f'(x) = -2 \log(1 + |x / B|)

    The inverse saturates outside the image: :math:`|y| \ge B` maps to the largest finite
    preimage :math:`\pm B (1 - u) / u` (:math:`u` the unit roundoff), with gradient 0.

    Example:
        >>> t = SoftclipTransform(bound=2.0)
        >>> t(torch.tensor([2.0]))
        tensor([1.])
    """

    sign = +1  # increasing, element-wise

    def __init__(self, bound: float | Tensor = 1.0) -> None:
        self.bound = bound_of(bound)

    def __repr__(self) -> str:
        return f"SoftclipTransform(bound={self.bound})"

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.interval(-self.bound, self.bound)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return soft_bound(x, self.bound), -2 * torch.log1p(torch.abs(x / self.bound))

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # Outside the image (|y / B| >= 1 - ulp, e.g. a sample beyond what the next
        # transform can reach) saturate at the largest finite preimage, a constant (so the
        # inverse stays monotone, with gradient 0 there) instead of flipping sign.
        one = torch.ones((), dtype=y.dtype, device=y.device)
        edge = torch.nextafter(one, torch.zeros_like(one))
        u = torch.abs(y / self.bound)
        end = torch.copysign(self.bound * edge / (1 - edge), y)
        x = torch.where(u > edge, end, y / (1 - u.clamp_max(edge)))  # (a NaN stays NaN)
        return x, 2 * torch.log1p(torch.abs(x / self.bound))
