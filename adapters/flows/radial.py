r"""Radial (Rezende & Mohamed, 2015) flows as modules (not in Zuko 1.6): each builds the core spec of the same name."""

from __future__ import annotations

__all__ = ["Radial", "RadialTransform"]

from typing import Any

from ... import flows as _core
from ..lazy import Flow, SpecTransform
from ..module import module_class


@module_class(_core.RadialTransform)
class RadialTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.RadialTransform` (same arguments)."""

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(_core.RadialTransform(features, context, **kwargs))


@module_class(_core.Radial)
class Radial(Flow):
    r"""Module of :class:`lazydist_functional.flows.Radial` (same arguments).

    Example:
        >>> flow = Radial(3, 2)
        >>> d = flow(torch.randn(5, 2))
        >>> d.log_prob(d.sample()).shape
        torch.Size([5])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, **kwargs: Any) -> None:
        self._build(_core.Radial(features, context, transforms, **kwargs))
