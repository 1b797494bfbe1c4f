r"""Pure 2-D convolutions and the convolutional network of image couplings (Glow's ``NN``)."""

from __future__ import annotations

__all__ = ["ConvNet", "conv2d", "init_conv2d"]

import math
from collections.abc import Callable, Mapping, Sequence
from math import prod
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..checks import ShapeError
from .init import on_device, uniform
from .mlp import _activation
from .network import Network


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""'Same'-padded 2-D convolution of ``x`` :math:`(*, C_\text{in}, H, W)` with ``weight``
    :math:`(*, C_\text{out}, C_\text{in}, k, k)` (odd :math:`k`), plus ``bias`` :math:`(*, C_\text{out})`.

    Any number of leading batch dimensions on ``x``; a weight with leading dimensions
    (stacked parameter sets) broadcasts against ``x``'s rightmost batch dimensions and is
    run as one grouped convolution.

    Example:
        >>> conv2d(torch.randn(5, 2, 4, 4), torch.randn(3, 2, 3, 3)).shape
        torch.Size([5, 3, 4, 4])
        >>> conv2d(torch.randn(5, 4, 2, 4, 4), torch.randn(4, 3, 2, 3, 3)).shape  # 4 stacked weights
        torch.Size([5, 4, 3, 4, 4])
    """

    k = weight.shape[-1]
    c_out, c_in = weight.shape[-4], weight.shape[-3]
    h, w = x.shape[-2:]
    if weight.dim() == 4:
        batch = x.shape[:-3]
        y = F.conv2d(x.reshape(-1, c_in, h, w), weight, bias, padding=k // 2)
        return y.reshape(*batch, c_out, h, w)
    lead = weight.shape[:-4]
    batch = torch.broadcast_shapes(x.shape[:-3], lead)
    groups_shape = batch[len(batch) - len(lead):]
    groups = prod(groups_shape)
    x = x.expand(*batch, c_in, h, w).reshape(-1, groups * c_in, h, w)
    weight = weight.expand(*groups_shape, *weight.shape[-4:]).reshape(groups * c_out, c_in, k, k)
    if bias is not None:
        bias = bias.expand(*groups_shape, c_out).reshape(groups * c_out)
    y = F.conv2d(x, weight, bias, padding=k // 2, groups=groups)
    return y.reshape(*batch, c_out, h, w)


def init_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    zero: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    r"""Weight :math:`(C_\text{out}, C_\text{in}, k, k)` and bias drawn from
    :math:`\mathcal{U}(-1/\sqrt{n}, 1/\sqrt{n})`, :math:`n = C_\text{in} k^2` (``nn.Conv2d``'s
    scale), or zeros (``zero=True``, Glow's last layer: each coupling starts as the identity).

    Example:
        >>> sorted((k, tuple(v.shape)) for k, v in init_conv2d(2, 3, 3).items())
        [('bias', (3,)), ('weight', (3, 2, 3, 3))]
    """

    shape = (out_channels, in_channels, kernel_size, kernel_size)
    if zero:
        dtype = dtype or torch.get_default_dtype()
        return {
            "weight": on_device(lambda: torch.zeros(shape, dtype=dtype), shape, dtype, device),
            "bias": on_device(lambda: torch.zeros(out_channels, dtype=dtype), (out_channels,), dtype, device),
        }
    bound = 1 / math.sqrt(in_channels * kernel_size**2)
    return {
        "weight": uniform(shape, bound, generator, dtype, device),
        "bias": uniform((out_channels,), bound, generator, dtype, device),
    }


class ConvNet(Network):
    r"""Convolutional network :math:`h_{i+1} = a(W_{i+1} * h_i + b_{i+1})` on images
    :math:`(*, C, H, W)`, 'same' padding, so :math:`H, W` are kept.

    Glow's coupling network is ``ConvNet(c_in, c_out, (512, 512))``: a 3x3 convolution, a
    1x1 convolution and a zero-initialized 3x3 convolution (default kernel sizes: 3 for the
    first and last layers, 1 between). Parameter names follow ``nn.Sequential`` positions
    (``"0"``, ``"2"``, ``"4"``), as :class:`~lazydist_functional.nn.MLP`'s.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Arguments:
        in_channels: input channels.
        out_channels: output channels.
        hidden_channels: hidden channels, one entry per hidden layer.
        kernel_sizes: one odd kernel size per layer (default: 3, 1, ..., 1, 3).
        activation: a parameter-free activation constructor (default ``nn.ReLU``).
        zero_last: initialize the last layer to zero (Glow).

    Example:
        >>> net = ConvNet(2, 4, [8, 8])
        >>> params = net.init(torch.Generator().manual_seed(0))
        >>> y = net.apply(params, torch.randn(5, 2, 6, 6))
        >>> y.shape, bool((y == 0).all())  # the zero last layer
        (torch.Size([5, 4, 6, 6]), True)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: Sequence[int] = (64, 64),
        kernel_sizes: Sequence[int] | None = None,
        activation: Callable[[], nn.Module] | None = None,
        zero_last: bool = True,
    ) -> None:
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.hidden_channels = tuple(int(h) for h in hidden_channels)
        n = len(self.hidden_channels) + 1
        if kernel_sizes is None:
            kernel_sizes = [3] + [1] * (n - 2) + [3] if n > 1 else [3]
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if len(self.kernel_sizes) != n or any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"ConvNet needs {n} odd kernel sizes, got {self.kernel_sizes}")
        self.act = _activation(activation)
        self.zero_last = bool(zero_last)
        sizes = (self.in_channels, *self.hidden_channels, self.out_channels)
        self.layers = tuple(
            (str(2 * i), i_, o_, k) for i, (i_, o_, k) in enumerate(zip(sizes[:-1], sizes[1:], self.kernel_sizes))
        )

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        last = len(self.layers) - 1
        return {
            name: init_conv2d(i, o, k, self.zero_last and j == last, generator, dtype, device)
            for j, (name, i, o, k) in enumerate(self.layers)
        }

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        if x.dim() < 3 or x.shape[-3] != self.in_channels:
            raise ShapeError(
                f"ConvNet's input should have shape (*, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        last = len(self.layers) - 1
        for j, (name, *_) in enumerate(self.layers):
            x = conv2d(x, params[name]["weight"], params[name]["bias"])
            if j < last:
                x = self.act(x)
        return x
