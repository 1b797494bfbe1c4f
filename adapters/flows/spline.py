r"""``zuko.flows.spline``: neural spline flows (NSF, NCSF)."""

from __future__ import annotations

__all__ = ["NCSF", "NSF", "CircularRQSTransform"]

from functools import partial
from math import pi
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Transform

from ... import flows as _core
from ...flows.spline import CircularRQSTransform
from ..distributions import BoxUniform
from ..lazy import UnconditionalDistribution
from ..module import module_class
from ..transforms import CircularShiftTransform, ComposedTransform, MonotonicRQSTransform
from .autoregressive import MAF

# The imports above that this file does not use are names of Zuko's module namespace.


@module_class(_core.NSF)
class NSF(MAF):
    r"""Neural spline flow; module of :class:`lazydist_functional.flows.NSF`.

    Example:
        >>> flow = NSF(3, 2)
        >>> flow(torch.randn(2)).sample((4,)).shape
        torch.Size([4, 3])
    """

    def __init__(self, features: int, context: int = 0, bins: int = 8, slope: float = 1e-3,
                 **kwargs: Any) -> None:
        self._build(_core.NSF(features, context, bins, slope, **kwargs))


@module_class(_core.NCSF)
class NCSF(MAF):
    r"""Neural circular spline flow; module of :class:`lazydist_functional.flows.NCSF`."""

    def __init__(self, features: int, context: int = 0, bins: int = 8, slope: float = 1e-3,
                 **kwargs: Any) -> None:
        self._build(_core.NCSF(features, context, bins, slope, **kwargs))
