r"""``zuko.flows.polynomial``: polynomial flows (SOSPF, BPF)."""

from __future__ import annotations

__all__ = ["BPF", "SOSPF", "ShiftedSOSPTransform"]

from functools import partial
from typing import Any

from torch import Tensor
from torch.distributions import Transform

from ... import flows as _core
from ...flows.polynomial import ShiftedSOSPTransform
from ..lazy import UnconditionalTransform
from ..module import module_class
from ..transforms import (
    AdditiveTransform,
    BoundedBernsteinTransform,
    ComposedTransform,
    SoftclipTransform,
    SOSPolynomialTransform,
)
from .autoregressive import MAF

# The imports above that this file does not use are names of Zuko's module namespace.


@module_class(_core.SOSPF)
class SOSPF(MAF):
    r"""Sum-of-squares polynomial flow; module of :class:`lazydist_functional.flows.SOSPF`.

    Example:
        >>> flow = SOSPF(3, 2, hidden_features=[16])
        >>> flow(torch.randn(2)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, degree: int = 4, polynomials: int = 3,
                 slope: float = 1e-3, **kwargs: Any) -> None:
        self._build(_core.SOSPF(features, context, degree, polynomials, slope, **kwargs))


@module_class(_core.BPF)
class BPF(MAF):
    r"""Bernstein polynomial flow; module of :class:`lazydist_functional.flows.BPF`."""

    def __init__(self, features: int, context: int = 0, degree: int = 16, **kwargs: Any) -> None:
        self._build(_core.BPF(features, context, degree, **kwargs))
