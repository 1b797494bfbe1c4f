r"""Parameter-free and simple element-wise transforms."""

from __future__ import annotations

__all__ = ["CircularShiftTransform", "CosTransform", "IdentityTransform", "SignedPowerTransform", "SinTransform"]

import math

import torch
from torch import Tensor
from torch.distributions import constraints

from ..pytree import register_pytree_class
from .base import FunctionalTransform, bound_of


@register_pytree_class(children=())
class IdentityTransform(FunctionalTransform):
    r""":math:`f(x) = x`, :math:`\log |f'(x)| = 0`."""

    sign = +1  # increasing, element-wise

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, torch.zeros_like(x)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y, torch.zeros_like(y)


@register_pytree_class(children=())
class CosTransform(FunctionalTransform):
    r""":math:`f(x) = -\cos x` on :math:`[0, \pi]`, :math:`\log |f'(x)| = \log |\sin x|`."""

    sign = +1  # increasing, element-wise

    domain = constraints.interval(0, math.pi)
    codomain = constraints.interval(-1, 1)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return -torch.cos(x), torch.log(torch.abs(torch.sin(x)))

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.acos(-y)
        return x, -torch.log(torch.abs(torch.sin(x)))


@register_pytree_class(children=())
class SinTransform(FunctionalTransform):
    r""":math:`f(x) = \sin x` on :math:`[-\pi/2, \pi/2]`, :math:`\log |f'(x)| = \log |\cos x|`."""

    sign = +1  # increasing, element-wise

    domain = constraints.interval(-math.pi / 2, math.pi / 2)
    codomain = constraints.interval(-1, 1)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sin(x), torch.log(torch.abs(torch.cos(x)))

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.asin(y)
        return x, -torch.log(torch.abs(torch.cos(x)))


@register_pytree_class(children=(), static=("bound",))
class CircularShiftTransform(FunctionalTransform):
    r"""Circular shift of :math:`[-B, B]`: :math:`f(x) = ((x \bmod 2B) - B)`, volume preserving.

    It is a bijection of the circle :math:`[-B, B)`, its own inverse.

    Example:
        >>> CircularShiftTransform(bound=1.0)(torch.tensor([-0.5, 0.5]))
        tensor([ 0.5000, -0.5000])
    """

    def __init__(self, bound: float | Tensor = 1.0) -> None:
        self.bound = bound_of(bound)

    def __repr__(self) -> str:
        return f"CircularShiftTransform(bound={self.bound})"

    @property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.interval(-self.bound, self.bound)

    codomain = domain

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.remainder(x, 2 * self.bound) - self.bound, torch.zeros_like(x)

    inverse_and_ladj = call_and_ladj  # its own inverse


@register_pytree_class(children=("alpha",))
class SignedPowerTransform(FunctionalTransform):
    r""":math:`f(x) = \mathrm{sign}(x) |x|^{\exp \alpha}`, :math:`\log |f'(x)| = \alpha + (e^\alpha - 1) \log |x|`."""

    sign = +1  # increasing, element-wise

    def __init__(self, alpha: Tensor) -> None:
        self.alpha = alpha

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x * torch.abs(x) ** torch.expm1(self.alpha)
        return y, self.alpha + torch.expm1(self.alpha) * torch.log(torch.abs(x))

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = y * torch.abs(y) ** torch.expm1(-self.alpha)  # the signed power exp(-alpha)
        return x, -(self.alpha + torch.expm1(self.alpha) * torch.log(torch.abs(x)))
