r"""``zuko.flows.autoregressive``: masked autoregressive transforms and flows (MAF)."""

from __future__ import annotations

__all__ = ["MAF", "MaskedAutoregressiveTransform"]

from collections.abc import Callable, Sequence
from functools import partial
from math import ceil, prod
from typing import Any

import torch
from torch import BoolTensor, LongTensor, Size, Tensor
from torch.distributions import Transform

from ... import flows as _core
from ..distributions import DiagNormal
from ..lazy import Flow, LazyTransform, SpecTransform, UnconditionalDistribution
from ..module import adopt_univariate, module_class, runs_as_zuko
from ..nn import MaskedMLP
from ..reprs import base_line, short_list
from ..transforms import AutoregressiveTransform, DependentTransform, MonotonicAffineTransform
from ..utils import broadcast, unpack
from .gaussianization import ElementWiseTransform, _hyper_meta

# The imports above that this file does not use are names of Zuko's module namespace.


@module_class(_core.MaskedAutoregressiveTransform)
class MaskedAutoregressiveTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.MaskedAutoregressiveTransform` (Zuko's
    signature: ``features, context, passes, order, adjacency, univariate, shapes, **kwargs``).
    With one feature it is an :class:`ElementWiseTransform`, as in Zuko.

    Example:
        >>> t = MaskedAutoregressiveTransform(3, 2)
        >>> f = t(torch.randn(2))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __new__(cls, features: int | None = None, context: int = 0, passes: int | None = None,
                order: Tensor | None = None, adjacency: Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        if features is None or features > 1:
            return super().__new__(cls)
        return ElementWiseTransform(features, context, *args, **kwargs)

    def __init__(self, features: int, context: int = 0, passes: int | None = None, order: Tensor | None = None,
                 adjacency: Tensor | None = None, univariate: Callable[..., Transform] = MonotonicAffineTransform,
                 shapes: Sequence[Size | Sequence[int]] = ((), ()), **kwargs: Any) -> None:
        super().__init__(_core.MaskedAutoregressiveTransform(
            features, context, passes, order, adjacency, univariate, shapes, **kwargs))
        adopt_univariate(self, univariate)

    _zuko_hooks = ("meta",)

    def meta(self, c: Tensor | None, x: Tensor) -> Transform:
        r"""Zuko's hook: the univariate transforms of all features given ``x`` (and ``c``),
        with parameters :math:`\phi = \text{hyper}([x, c])`. A subclass may override it; the
        module then runs as Zuko's does, ``AutoregressiveTransform(meta(c, .), passes)``."""

        return _hyper_meta(self, c, x)

    def forward(self, c: Tensor | None = None) -> Transform:
        if runs_as_zuko(self):
            return AutoregressiveTransform(partial(self.meta, c), self.passes)
        return super().forward(c)

    def extra_repr(self) -> str:
        if self.order is None:
            return "\n".join([base_line(self), f"(passes): {self.passes}"])
        return "\n".join([base_line(self), f"(order): {short_list(self.order)}"])


@module_class(_core.MAF)
class MAF(Flow):
    r"""Masked autoregressive flow; module of :class:`lazydist_functional.flows.MAF`.

    Example:
        >>> flow = MAF(3, 4)
        >>> flow(torch.randn(4)).log_prob(torch.randn(3)).shape
        torch.Size([])
        >>> flow.spec.features
        3
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 **kwargs: Any) -> None:
        self._build(_core.MAF(features, context, transforms, randperm, **kwargs))
