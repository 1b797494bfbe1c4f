r"""``zuko.flows.continuous``: continuous normalizing flows (CNF)."""

from __future__ import annotations

__all__ = ["CNF", "FFJTransform"]

from functools import partial
from math import pi
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.distributions import Transform

from ... import flows as _core
from ..distributions import DiagNormal
from ..lazy import Flow, LazyTransform, SpecTransform, UnconditionalDistribution
from ..module import custom_hooks, module_class
from ..nn import MLP
from ..transforms import FreeFormJacobianTransform
from ..utils import broadcast

# The imports above that this file does not use are names of Zuko's module namespace.


@module_class(_core.FFJTransform)
class FFJTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.FFJTransform` (Zuko's signature, plus the
    solver options of the core spec).

    Example:
        >>> t = FFJTransform(3, 4)
        >>> f = t(torch.randn(4))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-4)
        True
    """

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(_core.FFJTransform(features, context, **kwargs))

    _zuko_hooks = ("f",)

    def f(self, t: Tensor, x: Tensor, c: Tensor | None = None) -> Tensor:
        r"""Zuko's hook: the velocity :math:`\frac{dx}{dt} = \text{ode}([\cos \omega t, \sin \omega t, x, c])`.
        A subclass may override it; the module then integrates it as Zuko's does."""

        t = self.freqs * t[..., None]
        t = torch.cat((t.cos(), t.sin()), dim=-1)
        return self.ode(torch.cat(broadcast(t, x, ignore=1) if c is None else broadcast(t, x, c, ignore=1), dim=-1))

    def forward(self, c: Tensor | None = None) -> Transform:
        if not custom_hooks(self):
            return super().forward(c)
        params = tuple(self.parameters()) if self.training else ()
        return FreeFormJacobianTransform(
            f=partial(self.f, c=c), t0=self.times[0], t1=self.times[1], phi=params if c is None else (c, *params),
            atol=self.atol, rtol=self.rtol, exact=self.exact, steps=self.steps, method=self.method,
        )


@module_class(_core.CNF)
class CNF(Flow):
    r"""Continuous normalizing flow; module of :class:`lazydist_functional.flows.CNF`.

    ``zuko.flows.CNF(features, context, ...).state_dict()`` loads into it.

    Example:
        >>> flow = CNF(3, 2, hidden_features=[32])
        >>> flow(torch.randn(2)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        self._build(_core.CNF(features, context, **kwargs))
