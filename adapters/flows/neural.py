r"""``zuko.flows.neural``: neural autoregressive flows (NAF, UNAF) and their monotonic networks."""

from __future__ import annotations

__all__ = ["MNN", "NAF", "UMNN", "UNAF"]

from functools import partial
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.distributions import Transform

from ... import flows as _core
from ..distributions import DiagNormal
from ..lazy import Flow, UnconditionalDistribution, UnconditionalTransform
from ..module import SpecModule, custom_hooks, module_class
from ..nn import MLP, MonotonicMLP
from ..transforms import (
    AdditiveTransform,
    ComposedTransform,
    MonotonicTransform,
    SoftclipTransform,
    UnconstrainedMonotonicTransform,
)
from ..utils import broadcast
from .autoregressive import MaskedAutoregressiveTransform

# The imports above that this file does not use are names of Zuko's module namespace.


class _UnivariateNetwork(SpecModule):
    r"""A monotonic network module: ``forward(*phi)`` is the univariate transform that the
    core network spec builds from this module's parameters."""

    def forward(self, *phi: Tensor) -> Transform:
        spec, params, _ = self._bind()
        return spec.transform(params, *phi)


@module_class(_core.MNN)
class MNN(_UnivariateNetwork):
    r"""Monotonic neural network; module of :class:`lazydist_functional.flows.MNN`.

    Example:
        >>> f = MNN(signal=4, stack=3)(torch.randn(3, 4))
        >>> f(torch.zeros(3)).shape
        torch.Size([3])
    """

    def __init__(self, signal: int = 16, **kwargs: Any) -> None:
        super().__init__(_core.MNN(signal=signal, **kwargs))

    _zuko_hooks = ("f",)

    def f(self, signal: Tensor, x: Tensor) -> Tensor:
        r"""Zuko's hook: the monotonic map :math:`f(x) = \text{network}([x, s])`. A subclass may
        override it; the module then inverts it as Zuko's does (``MonotonicTransform``)."""

        return self.network(torch.cat(broadcast(x[..., None], signal, ignore=1), dim=-1)).squeeze(dim=-1)

    def forward(self, *phi: Tensor) -> Transform:
        if not custom_hooks(self):
            return super().forward(*phi)
        (signal,) = phi
        spec = self._built_spec
        return MonotonicTransform(f=partial(self.f, signal), bound=spec.bound, iterations=spec.iterations)


@module_class(_core.UMNN)
class UMNN(_UnivariateNetwork):
    r"""Unconstrained monotonic neural network; module of :class:`lazydist_functional.flows.UMNN`."""

    def __init__(self, signal: int = 16, **kwargs: Any) -> None:
        super().__init__(_core.UMNN(signal=signal, **kwargs))

    _zuko_hooks = ("g",)

    def g(self, signal: Tensor, x: Tensor) -> Tensor:
        r"""Zuko's hook: the positive integrand :math:`g(x) = \exp(d / (1 + |d| / 7))`,
        :math:`d = \text{integrand}([x, s])`. A subclass may override it; the module then
        integrates it as Zuko's does (``UnconstrainedMonotonicTransform``)."""

        dx = self.integrand(torch.cat(broadcast(x[..., None], signal, ignore=1), dim=-1)).squeeze(dim=-1)
        return torch.exp(dx / (1 + abs(dx / 7)))

    def forward(self, *phi: Tensor) -> Transform:
        if not custom_hooks(self):
            return super().forward(*phi)
        signal, constant = phi
        spec = self._built_spec
        return ComposedTransform(
            UnconstrainedMonotonicTransform(g=partial(self.g, signal), n=spec.n, iterations=spec.iterations),
            AdditiveTransform(shift=constant),
        )


@module_class(_core.NAF)
class NAF(Flow):
    r"""Neural autoregressive flow; module of :class:`lazydist_functional.flows.NAF`.

    ``zuko.flows.NAF(...).state_dict()`` of the same configuration loads into it.

    Example:
        >>> flow = NAF(3, 2, hidden_features=[16], network={"hidden_features": [8]})
        >>> flow(torch.randn(2)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 signal: int = 16, network: dict[str, Any] = {}, **kwargs: Any) -> None:  # noqa: B006
        self._build(_core.NAF(features, context, transforms, randperm, signal, network, **kwargs))


@module_class(_core.UNAF)
class UNAF(Flow):
    r"""Unconstrained neural autoregressive flow; module of :class:`lazydist_functional.flows.UNAF`."""

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 signal: int = 16, network: dict[str, Any] = {}, **kwargs: Any) -> None:  # noqa: B006
        self._build(_core.UNAF(features, context, transforms, randperm, signal, network, **kwargs))
