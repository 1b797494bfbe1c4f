r"""``zuko.flows.coupling``: coupling transforms and flows (NICE, RealNVP)."""

from __future__ import annotations

__all__ = ["GeneralCouplingTransform", "NICE", "RealNVP"]

from collections.abc import Callable, Sequence
from functools import partial
from math import prod
from typing import Any

import torch
from torch import BoolTensor, Size, Tensor
from torch.distributions import Transform

from ... import flows as _core
from ..distributions import DiagNormal
from ..lazy import Flow, LazyTransform, SpecTransform, UnconditionalDistribution
from ..module import adopt_univariate, module_class, runs_as_zuko
from ..nn import MLP
from ..reprs import base_line, short_list
from ..transforms import CouplingTransform, DependentTransform, MonotonicAffineTransform
from ..utils import broadcast, unpack
from .gaussianization import ElementWiseTransform, _hyper_meta

# The imports above that this file does not use are names of Zuko's module namespace.


@module_class(_core.GeneralCouplingTransform)
class GeneralCouplingTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.GeneralCouplingTransform` (Zuko's signature).
    With one feature it is an :class:`ElementWiseTransform`, as in Zuko.

    Example:
        >>> t = GeneralCouplingTransform(3, 2)
        >>> t(torch.randn(2))(torch.randn(3)).shape
        torch.Size([3])
    """

    def __new__(cls, features: int | None = None, context: int = 0, mask: Tensor | None = None,
                *args: Any, **kwargs: Any) -> Any:
        if features is None or features > 1:
            return super().__new__(cls)
        return ElementWiseTransform(features, context, *args, **kwargs)

    def __init__(self, features: int, context: int = 0, mask: Tensor | None = None,
                 univariate: Callable[..., Transform] = MonotonicAffineTransform,
                 shapes: Sequence[Size | Sequence[int]] = ((), ()), **kwargs: Any) -> None:
        super().__init__(_core.GeneralCouplingTransform(features, context, mask, univariate, shapes, **kwargs))
        adopt_univariate(self, univariate)

    _zuko_hooks = ("meta",)

    def meta(self, c: Tensor | None, x: Tensor) -> Transform:
        r"""Zuko's hook: the univariate transforms of the transformed features given the
        constant ones ``x`` (and ``c``), :math:`\phi = \text{hyper}([x_a, c])`. A subclass
        may override it; the module then runs as Zuko's does,
        ``CouplingTransform(meta(c, .), mask)``."""

        return _hyper_meta(self, c, x)

    def forward(self, c: Tensor | None = None) -> Transform:
        if runs_as_zuko(self):
            return CouplingTransform(partial(self.meta, c), self.mask)
        return super().forward(c)

    def extra_repr(self) -> str:
        return "\n".join([base_line(self), f"(mask): {short_list(self.mask.int())}"])


@module_class(_core.NICE)
class NICE(Flow):
    r"""NICE / RealNVP coupling flow; module of :class:`lazydist_functional.flows.NICE`.

    Example:
        >>> flow = NICE(4, 2)
        >>> flow(torch.randn(2)).log_prob(torch.randn(4)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randmask: bool = False,
                 **kwargs: Any) -> None:
        self._build(_core.NICE(features, context, transforms, randmask, **kwargs))


@module_class(_core.RealNVP)
class RealNVP(NICE):
    r"""Alias of :class:`NICE` (affine couplings), as in Zuko; module of
    :class:`lazydist_functional.flows.RealNVP`."""

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randmask: bool = False,
                 **kwargs: Any) -> None:
        self._build(_core.RealNVP(features, context, transforms, randmask, **kwargs))
