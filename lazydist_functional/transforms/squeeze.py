r"""Squeeze (space-to-depth) of images, as in RealNVP's multi-scale architecture."""

from __future__ import annotations

__all__ = ["SqueezeTransform"]

from torch import Size, Tensor

from ..checks import ShapeError
from ..pytree import register_pytree_class
from .base import FunctionalTransform
from .image import check_image, image_constraint


@register_pytree_class(children=(), static=("factor",))
class SqueezeTransform(FunctionalTransform):
    r"""Space-to-depth: each :math:`f \times f` block of pixels becomes :math:`f^2` channels,
    :math:`(C, H, W) \mapsto (C f^2, H / f, W / f)`. A permutation: :math:`\log |\det J| = 0`.

    Output channel :math:`c f^2 + i f + j` at pixel :math:`(h, w)` is input channel
    :math:`c` at pixel :math:`(h f + i, w f + j)`.

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> t = SqueezeTransform()
        >>> x = torch.arange(16.0).reshape(1, 4, 4)
        >>> t(x)[:, 0, 0]
        tensor([0., 1., 4., 5.])
        >>> t.forward_shape((1, 4, 4)), torch.equal(t.inv(t(x)), x)
        (torch.Size([4, 2, 2]), True)
    """

    domain = image_constraint
    codomain = image_constraint

    def __init__(self, factor: int = 2) -> None:
        self.factor = int(factor)

    def __repr__(self) -> str:
        return f"SqueezeTransform(factor={self.factor})"

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(self, x)
        f = self.factor
        *batch, C, H, W = x.shape
        if H % f or W % f:
            raise ShapeError(
                f"the input of SqueezeTransform should have a height and width divisible by {f}, got {tuple(x.shape)}"
            )
        y = x.reshape(*batch, C, H // f, f, W // f, f)
        n = len(batch)
        y = y.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
        return y.reshape(*batch, C * f * f, H // f, W // f), x.new_zeros(x.shape[:-3])

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        check_image(self, y)
        f = self.factor
        *batch, C, H, W = y.shape
        if C % (f * f):
            raise ShapeError(
                f"the input of the inverse SqueezeTransform should have channels divisible by {f * f}, got {tuple(y.shape)}"
            )
        x = y.reshape(*batch, C // (f * f), f, f, H, W)
        n = len(batch)
        x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
        return x.reshape(*batch, C // (f * f), H * f, W * f), y.new_zeros(y.shape[:-3])

    def forward_shape(self, shape: Size) -> Size:
        *batch, C, H, W = shape
        f = self.factor
        return Size((*batch, C * f * f, H // f, W // f))

    def inverse_shape(self, shape: Size) -> Size:
        *batch, C, H, W = shape
        f = self.factor
        return Size((*batch, C // (f * f), H * f, W * f))
