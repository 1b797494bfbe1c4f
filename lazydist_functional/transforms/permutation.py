r"""Permutation of the last dimension."""

from __future__ import annotations

__all__ = ["PermutationTransform"]

import torch
from torch import Tensor
from torch.distributions import constraints

from ..pytree import register_pytree_class
from .base import FunctionalTransform, take


@register_pytree_class(children=("order",))
class PermutationTransform(FunctionalTransform):
    r"""Permutes features: :math:`y_i = x_{\sigma(i)}`; :math:`|\det J| = 1`.

    Arguments:
        order: the permutation :math:`\sigma`, a long tensor of shape :math:`(D,)`.

    Example:
        >>> t = PermutationTransform(torch.tensor([2, 0, 1]))
        >>> t(torch.tensor([10.0, 11.0, 12.0]))
        tensor([12., 10., 11.])
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, order: Tensor) -> None:
        self.order = order

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return take(x, self.order), x.new_zeros(x.shape[:-1])

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return take(y, torch.argsort(self.order, dim=-1)), y.new_zeros(y.shape[:-1])
