r"""Glow: multi-scale flow of ActNorm, invertible 1x1 convolutions and affine couplings."""

from __future__ import annotations

__all__ = ["Glow"]

from collections.abc import Sequence
from typing import Any

from ..spec import Spec
from .actnorm import ActNorm
from .conv1x1 import InvertibleConv1x1
from .conv_coupling import ConvCouplingTransform
from .multiscale import MultiScaleFlow, squeeze_levels


class Glow(MultiScaleFlow):
    r"""Glow on images :math:`(C, H, W)`: ``levels`` scales, each a squeeze, ``depth`` steps of
    flow (ActNorm, invertible 1x1 convolution, affine coupling), and, but for the last, a
    split: half the channels leave the flow. With ``learn_prior`` (Glow's split), the leaving
    channels :math:`z_i` are modelled as :math:`\mathcal{N}(\mu(h_i, c), \sigma(h_i, c))` given
    those that continue: an affine coupling (one zero-initialized convolution) normalizes them
    onto the standard normal base, so

    .. math:: \log p(x \mid c) = \sum_i \log \mathcal{N}(\tilde z_i; 0, I) + \log |\det J|.

    The context vector :math:`c` enters every coupling network (and prior) as constant
    channels. Run :meth:`~lazydist_functional.flows.multiscale.MultiScaleFlow.data_init` on a
    first batch to initialize the ActNorm layers from data, as Glow does.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        | https://arxiv.org/abs/1807.03039

    Arguments:
        shape: the image shape :math:`(C, H, W)`; :math:`H, W` divisible by :math:`2^L`.
        context: the number of context features.
        levels: the number of scales :math:`L`.
        depth: the number of steps of flow per scale.
        learn_prior: model each split with a learned conditional Gaussian (else standard normal).
        kwargs: passed to the couplings'
            :class:`~lazydist_functional.flows.conv_coupling.ConvCouplingTransform`
            (``hidden_channels``, ``activation``, ...).

    Example:
        >>> flow = Glow((1, 4, 4), context=2, levels=2, depth=1, hidden_channels=[8])
        >>> x, c = torch.rand(5, 1, 4, 4), torch.randn(5, 2)
        >>> params = flow.data_init(flow.init(), x, c)
        >>> d = flow.apply(params, c)
        >>> d.log_prob(x).shape, d.sample().shape
        (torch.Size([5]), torch.Size([5, 1, 4, 4]))
    """

    def __init__(self, shape: Sequence[int], context: int = 0, levels: int = 3, depth: int = 4,
                 learn_prior: bool = True, **kwargs: Any) -> None:
        last = levels - 1

        def step(i: int, channels: int, height: int) -> list[Spec]:
            layers: list[Spec] = []
            for _ in range(depth):
                layers += [ActNorm(channels), InvertibleConv1x1(channels), ConvCouplingTransform(channels, context, **kwargs)]
            if learn_prior and i < last:  # the leaving half given the continuing half
                layers.append(ConvCouplingTransform(channels, context, hidden_channels=()))
            return layers

        super().__init__(squeeze_levels(shape, levels, step, "Glow"), shape)
        self.levels, self.depth, self.learn_prior = int(levels), int(depth), bool(learn_prior)
