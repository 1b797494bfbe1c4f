r"""Planar (Rezende & Mohamed, 2015) flows as modules (not in Zuko 1.6): each builds the core spec of the same name."""

from __future__ import annotations

__all__ = ["Planar", "PlanarTransform"]

from typing import Any

from ... import flows as _core
from ..lazy import Flow, SpecTransform
from ..module import module_class


@module_class(_core.PlanarTransform)
class PlanarTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.PlanarTransform` (same arguments)."""

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(_core.PlanarTransform(features, context, **kwargs))


@module_class(_core.Planar)
class Planar(Flow):
    r"""Module of :class:`lazydist_functional.flows.Planar` (same arguments).

    Example:
        >>> flow = Planar(3, 2)
        >>> d = flow(torch.randn(5, 2))
        >>> d.log_prob(d.sample()).shape
        torch.Size([5])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, **kwargs: Any) -> None:
        self._build(_core.Planar(features, context, transforms, **kwargs))
