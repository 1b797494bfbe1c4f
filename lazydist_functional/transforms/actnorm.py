r"""Activation normalization (Glow's ActNorm): a per-channel affine map of images."""

from __future__ import annotations

__all__ = ["ActNormTransform", "actnorm_statistics"]

import torch
from torch import Tensor

from ..pytree import register_pytree_class
from .base import FunctionalTransform
from .image import check_image, image_batch, image_constraint


def _channels(v: Tensor) -> Tensor:
    return v[..., :, None, None]


@register_pytree_class(children=("shift", "log_scale"))
class ActNormTransform(FunctionalTransform):
    r"""Per-channel affine map of images :math:`x \in \mathbb{R}^{C \times H \times W}`:

    .. math:: y_{chw} = e^{s_c} x_{chw} + b_c, \qquad \log |\det J| = H W \sum_c s_c

    Arguments:
        shift: :math:`b`, of shape :math:`(*, C)`.
        log_scale: :math:`s`, of shape :math:`(*, C)`.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = ActNormTransform(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.5]))
        >>> x = torch.randn(2, 3, 3)
        >>> y, ladj = t.call_and_ladj(x)
        >>> torch.allclose(t.inv(y), x), ladj  # 3 * 3 * 0.5
        (True, tensor(4.5000))
    """

    domain = image_constraint
    codomain = image_constraint

    def __init__(self, shift: Tensor, log_scale: Tensor) -> None:
        self.shift = shift
        self.log_scale = log_scale

    def _check(self, x: Tensor) -> None:
        check_image(self, x, self.shift.shape[-1])

    def _ladj(self, x: Tensor) -> Tensor:
        return image_batch(x, self.log_scale.sum(dim=-1) * (x.shape[-1] * x.shape[-2]))

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        y = x * _channels(self.log_scale).exp() + _channels(self.shift)
        return y, self._ladj(y)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check(y)
        x = (y - _channels(self.shift)) * _channels(-self.log_scale).exp()
        return x, -self._ladj(x)


def actnorm_statistics(x: Tensor, like: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""Glow's data-dependent initialization: ``(shift, log_scale)`` such that
    :class:`ActNormTransform` maps the batch ``x`` :math:`(*, C, H, W)` to zero mean and
    unit variance per channel,

    .. math:: s_c = -\log(\sigma_c + \epsilon), \qquad b_c = -\mu_c e^{s_c}.

    The statistics are taken over every dimension of ``x`` except the channel and the
    batch dimensions aligned with the leading dimensions of ``like`` (the current
    parameter, of shape :math:`(*, C)`: stacked parameter sets get statistics each), and
    returned with ``like``'s shape.

    Example:
        >>> x = 3 + 2 * torch.randn(500, 2, 4, 4)
        >>> shift, log_scale = actnorm_statistics(x, torch.zeros(2))
        >>> y = ActNormTransform(shift, log_scale)(x)
        >>> torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
        True
    """

    n = like.dim() + 2  # the dims (*lead, C, H, W) of x that line up with ``like`` and the pixels
    if x.dim() < n:
        n = 3
    keep = tuple(range(x.dim() - n, x.dim() - 2))
    dims = tuple(d for d in range(x.dim()) if d not in keep)
    mean = x.mean(dim=dims)
    std = x.std(dim=dims, unbiased=False)
    log_scale = -torch.log(std + eps)
    shift = -mean * log_scale.exp()
    return shift.expand(like.shape), log_scale.expand(like.shape)
