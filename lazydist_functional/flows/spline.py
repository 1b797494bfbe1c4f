r"""Neural spline flows."""

from __future__ import annotations

__all__ = ["NCSF", "NSF", "CircularRQSTransform"]

import math
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Transform

from ..distributions import BoxUniform
from ..transforms import CircularShiftTransform, ComposedTransform, MonotonicRQSTransform
from .autoregressive import MAF
from .common import at_least
from .core import UnconditionalDistribution


class NSF(MAF):
    r"""Neural spline flow: autoregressive monotonic rational-quadratic splines.

    Splines act on :math:`[-5, 5]` and are the identity outside; standardize
    features first. ``passes=2`` gives coupling transforms. Same signature and
    defaults as ``zuko.flows.NSF``.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Arguments:
        features: the number of features.
        context: the number of context features.
        bins: the number of bins :math:`K`.
        slope: the minimum slope of the splines.
        kwargs: passed to :class:`~lazydist_functional.flows.MAF`.

    Example:
        >>> flow = NSF(2, 1)
        >>> d = flow.apply(flow.init(), torch.randn(1))
        >>> x = d.rsample((4,))
        >>> x.shape
        torch.Size([4, 2])
    """

    def __init__(self, features: int, context: int = 0, bins: int = 8, slope: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(
            features=features,
            context=context,
            univariate=partial(MonotonicRQSTransform, slope=slope),
            shapes=[(bins,), (bins,), (at_least(type(self).__name__, "bins", bins) - 1,)],
            **kwargs,
        )


def CircularRQSTransform(*phi: Tensor, slope: float = 1e-3) -> Transform:  # noqa: N802 - Zuko's name
    r"""Circular rational-quadratic spline on :math:`[-\pi, \pi)`: a circular shift, then a
    monotonic spline on :math:`[-\pi, \pi]` whose boundary slopes match (Rezende et al., 2020)."""

    return ComposedTransform(
        CircularShiftTransform(bound=math.pi),
        MonotonicRQSTransform(*phi, bound=math.pi, slope=slope),
    )


class NCSF(MAF):
    r"""Neural circular spline flow, for features on the torus :math:`[-\pi, \pi)^D`.

    Autoregressive circular spline transforms (:func:`CircularRQSTransform`) on a
    uniform base over :math:`[-\pi, \pi]^D`. Same signature, defaults and parameter
    names as ``zuko.flows.NCSF``.

    References:
        | Normalizing Flows on Tori and Spheres (Rezende et al., 2020)
        | https://arxiv.org/abs/2002.02428

    Example:
        >>> flow = NCSF(2, 1)
        >>> d = flow.apply(flow.init(), torch.randn(1))
        >>> x = d.sample((5,))
        >>> bool((x.abs() <= math.pi + 1e-4).all())
        True
    """

    def __init__(self, features: int, context: int = 0, bins: int = 8, slope: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(
            features=features,
            context=context,
            univariate=partial(CircularRQSTransform, slope=slope),
            shapes=[(bins,), (bins,), (at_least(type(self).__name__, "bins", bins) - 1,)],
            **kwargs,
        )

    @staticmethod
    def base_of(features: int) -> UnconditionalDistribution:
        r"""The uniform base on :math:`[-\pi, \pi]^D` (Zuko's bounds)."""

        bound = torch.full((features,), math.pi + 1e-5)
        return UnconditionalDistribution(BoxUniform, lower=-bound, upper=bound, buffer=True)
