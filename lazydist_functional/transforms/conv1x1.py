r"""Invertible 1x1 convolution (Glow), LU-parametrized."""

from __future__ import annotations

__all__ = ["InvertibleConv1x1Transform", "lu_rotation"]

import torch
from torch import Tensor

from ..pytree import register_pytree_class
from .base import FunctionalTransform
from .image import check_image, image_batch, image_constraint


def _mix(W: Tensor, x: Tensor) -> Tensor:
    r""":math:`y_{\cdot hw} = W x_{\cdot hw}` at every pixel."""

    return torch.einsum("...ij,...jhw->...ihw", W, x)


@register_pytree_class(children=("perm", "lower", "upper", "log_scale", "sign"))
class InvertibleConv1x1Transform(FunctionalTransform):
    r"""Invertible 1x1 convolution: the same channel-mixing matrix :math:`W` at every pixel,

    .. math:: W = P L (U + \operatorname{diag}(\sigma \odot e^{s})), \qquad
              \log |\det J| = H W \sum_c s_c,

    with :math:`P` a fixed permutation matrix, :math:`L` unit lower triangular (its strict
    lower triangle is ``lower``), :math:`U` strictly upper triangular (``upper``),
    :math:`\sigma` fixed signs and :math:`s` the trainable log-magnitudes of the diagonal.
    The inverse is two triangular solves and a transpose.

    Arguments:
        perm: :math:`P`, :math:`(C, C)`.
        lower: :math:`(*, C, C)`, only the strict lower triangle is read.
        upper: :math:`(*, C, C)`, only the strict upper triangle is read.
        log_scale: :math:`s`, :math:`(*, C)`.
        sign: :math:`\sigma`, :math:`(C,)`, entries :math:`\pm 1`.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> P, lower, upper, log_scale, sign = lu_rotation(3, torch.Generator().manual_seed(0))
        >>> t = InvertibleConv1x1Transform(P, lower, upper, log_scale, sign)
        >>> x = torch.randn(3, 2, 2)
        >>> y, ladj = t.call_and_ladj(x)
        >>> torch.allclose(t.inv(y), x, atol=1e-5), bool(ladj.abs() < 1e-5)  # a rotation
        (True, True)
    """

    domain = image_constraint
    codomain = image_constraint
    sign: Tensor | None = None  # Glow's signs of the diagonal (a pytree leaf), in place of torch's ``Transform.sign``

    def __init__(self, perm: Tensor, lower: Tensor, upper: Tensor, log_scale: Tensor, sign: Tensor) -> None:
        self.perm = perm
        self.lower = lower
        self.upper = upper
        self.log_scale = log_scale
        self.sign = sign

    def _factors(self) -> tuple[Tensor, Tensor]:
        C = self.log_scale.shape[-1]
        eye = torch.eye(C, dtype=self.lower.dtype, device=self.lower.device)
        L = torch.tril(self.lower, diagonal=-1) + eye
        U = torch.triu(self.upper, diagonal=1) + torch.diag_embed(self.sign * self.log_scale.exp())
        return L, U

    @property
    def weight(self) -> Tensor:
        r""":math:`W = P L U`."""

        L, U = self._factors()
        return self.perm @ L @ U

    def _ladj(self, x: Tensor) -> Tensor:
        return image_batch(x, self.log_scale.sum(dim=-1) * (x.shape[-1] * x.shape[-2]))

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(self, x, self.log_scale.shape[-1])
        y = _mix(self.weight, x)
        return y, self._ladj(y)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        check_image(self, y, self.log_scale.shape[-1])
        L, U = self._factors()
        C, H, W = y.shape[-3:]
        z = _mix(self.perm.transpose(-1, -2), y).reshape(*y.shape[:-3], C, H * W)
        batch = torch.broadcast_shapes(z.shape[:-2], L.shape[:-2])
        z = z.expand(*batch, C, H * W)
        z = torch.linalg.solve_triangular(L.expand(*batch, C, C), z, upper=False, unitriangular=True)
        z = torch.linalg.solve_triangular(U.expand(*batch, C, C), z, upper=True)
        x = z.reshape(*batch, C, H, W)
        return x, -self._ladj(x)


def lu_rotation(
    channels: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""Glow's initialization: a random rotation :math:`W = Q` (QR of a Gaussian matrix) in
    LU form, ``(P, lower, upper, log_scale, sign)`` with :math:`W = P L U` as in
    :class:`InvertibleConv1x1Transform`.

    Example:
        >>> P, lower, upper, log_scale, sign = lu_rotation(4)
        >>> t = InvertibleConv1x1Transform(P, lower, upper, log_scale, sign)
        >>> torch.allclose(t.weight @ t.weight.T, torch.eye(4), atol=1e-5)
        True
    """

    dtype = dtype or torch.get_default_dtype()
    A = torch.randn(channels, channels, generator=generator, dtype=torch.float64)
    Q, _ = torch.linalg.qr(A)
    P, L, U = torch.linalg.lu(Q)
    d = torch.diagonal(U)
    out = (P, torch.tril(L, -1), torch.triu(U, 1), torch.log(torch.abs(d)), torch.sign(d))
    return tuple(t.to(dtype) for t in out)  # type: ignore[return-value]
