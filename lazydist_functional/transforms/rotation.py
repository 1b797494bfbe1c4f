r"""Rotation :math:`f(x) = R x` with :math:`R = \exp(A - A^T)`."""

from __future__ import annotations

__all__ = ["RotationTransform", "skew_exp"]

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import constraints

from ..checks import check_dtype
from ..pytree import register_pytree_class
from .base import FunctionalTransform

# Added to theta^2 so that theta = sqrt(theta^2) > 0 (no 0/0 in the gradients at S = 0);
# far below any theta^2 that changes a or b in float64 (they are 1 and 1/2 there).
_TINY = 1e-30


def skew_exp(S: Tensor) -> Tensor:
    r"""The exponential of skew-symmetric matrices :math:`S`, shape :math:`(*, D, D)`.

    For :math:`D \le 3` the closed form (Rodrigues): the eigenvalues of :math:`S` are
    :math:`0, \pm i\theta` with :math:`\theta^2 = \frac12 \|S\|_F^2`, so :math:`S^3 =
    -\theta^2 S` and

    .. math:: e^S = I + \frac{\sin\theta}{\theta} S + \frac{2 \sin^2(\theta/2)}{\theta^2} S^2,

    accurate to rounding for every norm (the half-angle form has no cancellation) and a
    dozen operations, where ``torch.linalg.matrix_exp`` chooses a Padé degree and a number
    of squarings from the norm (many small operations). For :math:`D > 3`,
    ``torch.linalg.matrix_exp``. Half precision is computed in float32.

    Example:
        >>> A = torch.randn(3, 3)
        >>> S = A - A.T
        >>> torch.allclose(skew_exp(S), torch.linalg.matrix_exp(S), atol=1e-5)
        True
    """

    if S.dtype in (torch.bfloat16, torch.float16):  # no accurate half matrix_exp (NaN on CPU)
        return skew_exp(S.float()).to(S.dtype)
    D = S.shape[-1]
    if D > 3:
        return torch.linalg.matrix_exp(S)
    theta = torch.sqrt(torch.sum(S * S, dim=(-2, -1), keepdim=True) * 0.5 + _TINY)
    a = torch.sin(theta) / theta
    b = torch.sin(theta * 0.5) / theta
    eye = torch.eye(D, dtype=S.dtype, device=S.device)
    return torch.addcmul(torch.addcmul(eye, a, S), b * b * 2, S @ S)


@register_pytree_class(children=("A",))
class RotationTransform(FunctionalTransform):
    r"""Rotation :math:`f(x) = R x`, :math:`R = \exp(A - A^T)` (orthogonal, since
    :math:`A - A^T` is skew-symmetric), so :math:`\log |\det J| = 0` and
    :math:`f^{-1}(y) = R^T y`. The exponential is :func:`skew_exp` (a closed form for
    :math:`D \le 3`, equal to ``torch.linalg.matrix_exp`` to rounding).

    Arguments:
        A: a square matrix, shape :math:`(*, D, D)`.

    Example:
        >>> t = RotationTransform(torch.randn(3, 3))
        >>> x = torch.randn(3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, A: Tensor) -> None:
        self.A = A

    @property
    def R(self) -> Tensor:
        return skew_exp(self.A - self.A.mT)

    # One matrix R (the usual case, also under vmap over stacked parameters): ``F.linear``,
    # which vmap over x folds into one matrix product (einsum expanded R per sample, and
    # was 1.3-3.6x slower at N = 1024, D = 5 on CPU); a batch of matrices: einsum.
    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_dtype("the input of RotationTransform", x, self.A.dtype)
        R = self.R
        y = F.linear(x, R) if R.dim() == 2 else torch.einsum("...ij,...j->...i", R, x)
        return y, y.new_zeros(()).expand(y.shape[:-1])

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        check_dtype("the input of RotationTransform's inverse", y, self.A.dtype)
        R = self.R
        x = F.linear(y, R.mT) if R.dim() == 2 else torch.einsum("...ij,...i->...j", R, y)
        return x, x.new_zeros(()).expand(x.shape[:-1])
