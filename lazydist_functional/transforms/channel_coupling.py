r"""Coupling of images along channels (RealNVP's channel-wise masks, Glow's affine coupling)."""

from __future__ import annotations

__all__ = ["ChannelCouplingTransform"]

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Transform

from ..pytree import register_pytree_class
from .base import FunctionalTransform, sum_rightmost
from .image import check_image, image_constraint


@register_pytree_class(children=("meta",), static=("channels", "split", "swap"))
class ChannelCouplingTransform(FunctionalTransform):
    r"""Coupling of an image :math:`x \in \mathbb{R}^{C \times H \times W}` split along channels
    into :math:`x_1 = x_{:k}` and :math:`x_2 = x_{k:}`:

    .. math:: y_a = x_a, \qquad y_b = f(x_b \mid x_a), \qquad
              \log |\det J| = \sum_{chw} \log |f'(x_b \mid x_a)_{chw}|

    where :math:`(a, b) = (1, 2)`, or :math:`(2, 1)` with ``swap``, and :math:`f(\cdot \mid x_a)`
    is the element-wise transform ``meta(x_a)`` (e.g. an affine map whose shift and scale
    come from a convolutional network of :math:`x_a`).

    Arguments:
        meta: a pytree callable ``x_a -> Transform``, element-wise on :math:`x_b`.
        channels: :math:`C`.
        split: :math:`k`, the number of channels of :math:`x_1`.
        swap: transform the first part given the second instead.

    References:
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> from lazydist_functional.transforms import MonotonicAffineTransform
        >>> from lazydist_functional.pytree import Partial
        >>> meta = Partial(lambda a: MonotonicAffineTransform(a, a), ())  # shift = scale = x_a
        >>> t = ChannelCouplingTransform(meta, channels=2, split=1)
        >>> x = torch.randn(2, 3, 3)
        >>> y, ladj = t.call_and_ladj(x)
        >>> torch.equal(y[0], x[0]), torch.allclose(t.inv(y), x, atol=1e-6)
        (True, True)
    """

    domain = image_constraint
    codomain = image_constraint

    def __init__(self, meta: Callable[[Tensor], Transform], channels: int, split: int, swap: bool = False) -> None:
        self.meta = meta
        self.channels = int(channels)
        self.split = int(split)
        self.swap = bool(swap)

    def __repr__(self) -> str:
        return f"ChannelCouplingTransform(channels={self.channels}, split={self.split}, swap={self.swap})"

    def _run(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        check_image(self, x, self.channels)
        x1, x2 = x[..., : self.split, :, :], x[..., self.split :, :, :]
        x_a, x_b = (x2, x1) if self.swap else (x1, x2)
        f = self.meta(x_a)
        y_b, ladj = f.inv.call_and_ladj(x_b) if inverse else f.call_and_ladj(x_b)
        # x_a may have fewer batch dims than y_b (one x, a batch of contexts): broadcast.
        batch = torch.broadcast_shapes(x_a.shape[:-3], y_b.shape[:-3])
        y_a, y_b = x_a.expand(*batch, *x_a.shape[-3:]), y_b.expand(*batch, *y_b.shape[-3:])
        y = torch.cat((y_b, y_a) if self.swap else (y_a, y_b), dim=-3)
        return y, sum_rightmost(ladj, 3).expand(batch)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, inverse=False)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(y, inverse=True)
