r"""Lazy affine coupling of images along channels, conditioned by a convolutional network."""

from __future__ import annotations

__all__ = ["ConvCouplingTransform", "with_context_channels"]

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Transform

from ..checks import check_batch
from ..nn.conv import ConvNet
from ..pytree import Partial
from ..spec import Spec
from ..transforms import MonotonicAffineTransform
from ..transforms.channel_coupling import ChannelCouplingTransform
from .common import FlowConfigError


def with_context_channels(x: Tensor, c: Tensor | None) -> Tensor:
    r"""Appends the context vector ``c`` :math:`(*, K)` to the image ``x`` :math:`(*, C, H, W)` as
    :math:`K` constant channels, after broadcasting batch dimensions.

    Example:
        >>> with_context_channels(torch.zeros(5, 2, 3, 3), torch.ones(4)).shape
        torch.Size([5, 6, 3, 3])
    """

    if c is None:
        return x
    check_batch("the input", x.shape[:-2], "the context", c.shape[:-1])
    batch = torch.broadcast_shapes(x.shape[:-3], c.shape[:-1])
    H, W = x.shape[-2:]
    c = c[..., :, None, None].expand(*batch, c.shape[-1], H, W)
    return torch.cat((x.expand(*batch, *x.shape[-3:]), c), dim=-3)


class ConvCouplingTransform(Spec):
    r"""Lazy affine coupling of images :math:`(C, H, W)` along channels (Glow's affine
    coupling, RealNVP's channel-wise coupling):

    .. math:: y_a = x_a, \qquad y_b = e^{s} \odot x_b + t, \qquad (t, s) = \mathrm{NN}(x_a, c)

    where NN is a :class:`~lazydist_functional.nn.conv.ConvNet` (zero-initialized last layer,
    so the coupling starts as the identity) whose input is :math:`x_a` with the context
    vector :math:`c` appended as constant channels, and :math:`s` is soft-bounded as in
    :class:`~lazydist_functional.transforms.MonotonicAffineTransform`. Parameters under
    ``"hyper"``.

    Arguments:
        channels: :math:`C` (at least 2).
        context: the number of context features.
        split: the number of channels of the first part (default :math:`\lfloor C/2 \rfloor`).
        swap: transform the first part given the second (default: the second given the first).
        hidden_channels, kwargs: passed to :class:`~lazydist_functional.nn.conv.ConvNet`.

    Example:
        >>> t = ConvCouplingTransform(4, context=3, hidden_channels=[8])
        >>> f = t.apply(t.init(), torch.randn(3))
        >>> x = torch.randn(4, 2, 2)
        >>> torch.allclose(f(x), x)  # identity at initialization
        True
    """

    def __init__(self, channels: int, context: int = 0, split: int | None = None, swap: bool = False,
                 hidden_channels: Any = (64, 64), **kwargs: Any) -> None:
        self.channels = int(channels)
        self.context = int(context)
        self.split = self.channels // 2 if split is None else int(split)
        if not 0 < self.split < self.channels:
            raise FlowConfigError(
                f"ConvCouplingTransform needs 0 < split < channels, got split={self.split}, channels={self.channels}"
            )
        self.swap = bool(swap)
        self.channels_b = self.split if swap else self.channels - self.split
        channels_a = self.channels - self.channels_b
        self.hyper = ConvNet(channels_a + self.context, 2 * self.channels_b, hidden_channels, **kwargs)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"hyper": self.hyper.init(generator, dtype=dtype, device=device)}

    def meta(self, hyper: Mapping[str, Any], c: Tensor | None, x_a: Tensor) -> Transform:
        r"""The element-wise affine transform of :math:`x_b` given :math:`x_a` and :math:`c`."""

        phi = self.hyper._apply(hyper, with_context_channels(x_a, c), {})
        shift, scale = phi[..., : self.channels_b, :, :], phi[..., self.channels_b :, :, :]
        return MonotonicAffineTransform(shift, scale)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Transform:
        return ChannelCouplingTransform(Partial(self.meta, (params["hyper"], c)), self.channels, self.split, self.swap)
