r"""Multi-scale architecture: levels of image transforms with half the channels factored out
after each level (RealNVP, Glow)."""

from __future__ import annotations

__all__ = ["MultiScaleTransform", "factor_out", "multiscale_shapes"]

from collections.abc import Sequence
from math import prod

import torch
from torch import Size, Tensor
from torch.distributions import Transform, constraints

from ..checks import check_event
from ..pytree import register_pytree_class
from .base import FunctionalTransform, call_and_ladj
from .image import image_constraint


def factor_out(h: Tensor) -> tuple[Tensor, Tensor]:
    r"""Splits an image :math:`(*, C, H, W)` into the channels that continue through the flow
    (the first :math:`\lfloor C / 2 \rfloor`) and those that leave it (the rest).

    Example:
        >>> kept, out = factor_out(torch.zeros(5, 3, 2, 2))
        >>> kept.shape, out.shape
        (torch.Size([5, 1, 2, 2]), torch.Size([5, 2, 2, 2]))
    """

    k = h.shape[-3] // 2
    return h[..., :k, :, :], h[..., k:, :, :]


def multiscale_shapes(levels: Sequence[Transform], shape: Sequence[int]) -> tuple[Size, ...]:
    r"""The image shape at the output of each level (before its factor-out).

    Example:
        >>> from lazydist_functional.transforms import SqueezeTransform
        >>> multiscale_shapes([SqueezeTransform(), SqueezeTransform()], (1, 8, 8))
        (torch.Size([4, 4, 4]), torch.Size([8, 2, 2]))
    """

    shapes, current = [], Size(shape)
    for i, level in enumerate(levels):
        current = Size(level.forward_shape(current))
        shapes.append(current)
        current = Size((current[0] // 2, *current[1:]))
    return tuple(shapes)


@register_pytree_class(children=("levels",), static=("shape", "shapes"))
class MultiScaleTransform(FunctionalTransform):
    r"""Maps an image :math:`x \in \mathbb{R}^{C \times H \times W}` to a vector
    :math:`z \in \mathbb{R}^{CHW}` through levels :math:`f_1, \dots, f_L` of image transforms.
    After each level but the last, half the channels leave the flow (factor-out) and the
    rest continue into the next level:

    .. math:: (h_i, z_i) = \operatorname{split}(f_i(h_{i-1})), \quad h_0 = x, \qquad
              z = (z_1, \dots, z_{L-1}, f_L(h_{L-1})), \qquad
              \log |\det J| = \sum_i \log |\det J_{f_i}(h_{i-1})|

    so a standard normal base on :math:`z` gives :math:`\log p(x) = \sum_i \log
    \mathcal{N}(z_i) + \log |\det J|`, the sum of the base terms of each scale. A learned
    prior on :math:`z_i` given :math:`h_i` (Glow's split) is the last layer of :math:`f_i`: a
    coupling of the leaving channels given the continuing ones.

    Arguments:
        levels: the image transforms, one per level (each typically starts with a squeeze).
        shape: the input shape :math:`(C, H, W)`.
        shapes: the output shape of each level (:func:`multiscale_shapes`).

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> from lazydist_functional.transforms import SqueezeTransform
        >>> levels = [SqueezeTransform(), SqueezeTransform()]
        >>> t = MultiScaleTransform(levels, (1, 4, 4), multiscale_shapes(levels, (1, 4, 4)))
        >>> x = torch.randn(5, 1, 4, 4)
        >>> z = t(x)
        >>> z.shape, torch.equal(t.inv(z), x)
        (torch.Size([5, 16]), True)
    """

    domain = image_constraint
    codomain = constraints.real_vector

    def __init__(self, levels: Sequence[Transform], shape: Sequence[int], shapes: Sequence[Sequence[int]]) -> None:
        self.levels = list(levels)
        self.shape = tuple(int(s) for s in shape)
        self.shapes = tuple(tuple(int(s) for s in level) for level in shapes)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}): {t!r}".replace("\n", "\n  ") for i, t in enumerate(self.levels))
        return f"MultiScaleTransform(\n{inner}\n)"

    @property
    def sizes(self) -> tuple[int, ...]:
        r"""The number of entries of :math:`z` coming from each level."""

        out = [(s[0] - s[0] // 2) * s[1] * s[2] for s in self.shapes[:-1]]
        return (*out, prod(self.shapes[-1]))

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_event(x, self.shape, f"the input of {type(self).__name__}")
        outs, total, h = [], 0, x
        last = len(self.levels) - 1
        for i, level in enumerate(self.levels):
            h, ladj = call_and_ladj(level, h)
            total = total + ladj
            if i < last:
                h, z = factor_out(h)
                outs.append(z)
        outs.append(h)
        batch = torch.broadcast_shapes(*(z.shape[:-3] for z in outs))
        z = torch.cat([z.expand(*batch, *z.shape[-3:]).flatten(-3) for z in outs], dim=-1)
        return z, total

    def inverse_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        check_event(z, (prod(self.shape),), f"the input of the inverse {type(self).__name__}")
        parts = z.split(self.sizes, dim=-1)
        h, total = None, 0
        for i in reversed(range(len(self.levels))):
            s = self.shapes[i]
            if h is None:
                h = parts[i].reshape(*z.shape[:-1], *s)
            else:
                out = parts[i].reshape(*z.shape[:-1], s[0] - s[0] // 2, *s[1:])
                batch = torch.broadcast_shapes(h.shape[:-3], out.shape[:-3])
                h = torch.cat((h.expand(*batch, *h.shape[-3:]), out.expand(*batch, *out.shape[-3:])), dim=-3)
            h, ladj = call_and_ladj(self.levels[i].inv, h)
            total = total + ladj
        return h, total

    def forward_shape(self, shape: Size) -> Size:
        return Size((*shape[: len(shape) - 3], prod(self.shape)))

    def inverse_shape(self, shape: Size) -> Size:
        return Size((*shape[: len(shape) - 1], *self.shape))
