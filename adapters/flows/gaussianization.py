r"""``zuko.flows.gaussianization``: element-wise transforms and Gaussianization flows (GF)."""

from __future__ import annotations

__all__ = ["GF", "ElementWiseTransform"]

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

import torch
import torch.nn as nn
from torch import Size, Tensor
from torch.distributions import Transform

from ... import flows as _core
from ..distributions import DiagNormal
from ..lazy import Flow, LazyTransform, SpecTransform, UnconditionalDistribution, UnconditionalTransform
from ..module import adopt_univariate, module_class, runs_as_zuko
from ..nn import MLP
from ..reprs import base_line
from ..transforms import DependentTransform, GaussianizationTransform, MonotonicAffineTransform, RotationTransform
from ..utils import broadcast, unpack

# The imports above that this file does not use are names of Zuko's module namespace.


def _univariate_from_hyper(module: nn.Module, inputs: Tensor) -> Transform:
    r"""Zuko's univariate transforms of a transform module: parameters
    :math:`\phi = \text{hyper}(\text{inputs})` split into ``shapes``, one transform per
    feature, ``DependentTransform(univariate(*phi), 1)``."""

    phi = module.hyper(inputs).unflatten(-1, (-1, module.total))
    return DependentTransform(module.univariate(*unpack(phi, module.shapes)), 1)


def _hyper_meta(module: nn.Module, c: Tensor | None, x: Tensor) -> Transform:
    r"""Zuko's ``meta(c, x)`` of the autoregressive and coupling transforms:
    :func:`_univariate_from_hyper` of :math:`[x, c]`."""

    return _univariate_from_hyper(module, x if c is None else torch.cat(broadcast(x, c, ignore=1), dim=-1))


@module_class(_core.ElementWiseTransform)
class ElementWiseTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.ElementWiseTransform` (Zuko's signature).

    Example:
        >>> t = ElementWiseTransform(3, 4)
        >>> t(torch.randn(4))(torch.randn(3)).shape
        torch.Size([3])
    """

    def __init__(self, features: int, context: int = 0, univariate: Callable[..., Transform] = MonotonicAffineTransform,
                 shapes: Sequence[Size | Sequence[int]] = ((), ()), **kwargs: Any) -> None:
        super().__init__(_core.ElementWiseTransform(features, context, univariate, shapes, **kwargs))
        adopt_univariate(self, univariate)

    def forward(self, c: Tensor | None = None) -> Transform:
        if not runs_as_zuko(self):
            return super().forward(c)
        if c is None:
            return DependentTransform(self.univariate(*self.phi), 1)
        return _univariate_from_hyper(self, c)

    def extra_repr(self) -> str:
        return base_line(self)


@module_class(_core.GF)
class GF(Flow):
    r"""Gaussianization flow; module of :class:`lazydist_functional.flows.GF`.

    Example:
        >>> flow = GF(3, 2, hidden_features=[16])
        >>> flow(torch.randn(2)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, components: int = 8,
                 **kwargs: Any) -> None:
        # Initial values drawn from torch's global generator in Zuko's order (a seeded
        # script gets Zuko's weights): the element-wise networks first, then the
        # rotations, last first. The core spec's own rotation draws do not count.
        with torch.random.fork_rng(devices=[]):
            spec = _core.GF(features, context, transforms, components, **kwargs)
        params, state = spec.init_trees(None, None, None)
        layers = params["transform"]["transforms"]
        for i in reversed(range(1, transforms)):
            layers[str(2 * i - 1)]["A"] = torch.randn(features, features)
        self._build(spec, params, state)
