r"""Invertible linear transforms."""

from __future__ import annotations

__all__ = ["LULinearTransform"]

import torch
from torch import Tensor
from torch.distributions import constraints

from ..checks import check_dtype
from ..pytree import register_pytree_class
from .base import FunctionalTransform


@register_pytree_class(children=("LU",))
class LULinearTransform(FunctionalTransform):
    r""":math:`f(x) = L U x` with :math:`L` lower triangular and :math:`U` unit upper triangular.

    ``LU`` packs both: its lower triangle (diagonal included) is :math:`L`, its strict
    upper triangle is :math:`U` (whose diagonal is 1). :math:`\log |\det J| = \sum_i \log |L_{ii}|`.

    Example:
        >>> t = LULinearTransform(torch.eye(3) + 0.1 * torch.randn(3, 3))
        >>> x = torch.randn(3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, LU: Tensor) -> None:
        self.LU = LU

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.LU.shape[-1], dtype=self.LU.dtype, device=self.LU.device)
        return torch.tril(self.LU), torch.triu(self.LU, diagonal=1) + eye

    def _ladj(self, like: Tensor) -> Tensor:
        diag = torch.diagonal(self.LU, dim1=-2, dim2=-1)
        return torch.log(torch.abs(diag)).sum(dim=-1).expand(like.shape[:-1])

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_dtype("the input of LULinearTransform", x, self.LU.dtype)
        L, U = self._factors()
        y = torch.matmul(L @ U, x.unsqueeze(-1)).squeeze(-1)
        return y, self._ladj(y)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        check_dtype("the input of LULinearTransform's inverse", y, self.LU.dtype)
        L, U = self._factors()
        z = torch.linalg.solve_triangular(L, y.unsqueeze(-1), upper=False)
        x = torch.linalg.solve_triangular(U, z, upper=True, unitriangular=True).squeeze(-1)
        return x, -self._ladj(x)
