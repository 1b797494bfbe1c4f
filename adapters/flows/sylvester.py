r"""Sylvester (van den Berg et al., 2018) flows as modules (not in Zuko 1.6): each builds the core spec of the same name."""

from __future__ import annotations

__all__ = ["Sylvester", "SylvesterTransform"]

from typing import Any

from ... import flows as _core
from ..lazy import Flow, SpecTransform
from ..module import module_class


@module_class(_core.SylvesterTransform)
class SylvesterTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.SylvesterTransform` (same arguments)."""

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(_core.SylvesterTransform(features, context, **kwargs))


@module_class(_core.Sylvester)
class Sylvester(Flow):
    r"""Module of :class:`lazydist_functional.flows.Sylvester` (same arguments).

    Example:
        >>> flow = Sylvester(3, 2)
        >>> d = flow(torch.randn(5, 2))
        >>> d.log_prob(d.sample()).shape
        torch.Size([5])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, **kwargs: Any) -> None:
        self._build(_core.Sylvester(features, context, transforms, **kwargs))
