r"""Coupling transforms and flows (NICE, RealNVP)."""

from __future__ import annotations

__all__ = ["GeneralCouplingTransform", "NICE", "RealNVP"]

from collections.abc import Callable, Mapping, Sequence
from math import prod
from typing import Any

import torch
from torch import Size, Tensor
from torch.distributions import Transform

from ..nn import MLP
from ..pytree import Partial
from ..spec import Spec
from ..transforms import CouplingTransform, MonotonicAffineTransform
from ._conditioner import univariate_from, with_context
from .batchnorm import with_batch_norm
from .common import FlowConfigError, standard_base
from .core import Flow
from .elementwise import ElementWiseTransform


class GeneralCouplingTransform(Spec):
    r"""Lazy coupling transform :math:`y_a = x_a`, :math:`y_b = f(x_b | x_a, c)`.

    An MLP over :math:`(x_a, c)` outputs the parameters of the univariate
    transforms of :math:`x_b`. Same signature and defaults as
    ``zuko.flows.GeneralCouplingTransform``; the mask is state (``"mask"``).

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Arguments:
        features: the number of features (at least 2).
        context: the number of context features.
        mask: the coupling mask, True for the constant part :math:`x_a`
            (default: odd features).
        univariate: the univariate transform constructor.
        shapes: the shapes of its parameters.
        kwargs: passed to :class:`~lazydist_functional.nn.MLP`.

    Example:
        >>> t = GeneralCouplingTransform(3, 2)
        >>> f = t.apply(t.init(), torch.randn(2))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __new__(
        cls,
        features: int | None = None,
        context: int = 0,
        mask: Tensor | Sequence[bool] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Spec:
        if features == 1:  # as Zuko: a single feature cannot be split, use an element-wise transform
            return ElementWiseTransform(features, context, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        features: int,
        context: int = 0,
        mask: Tensor | Sequence[bool] | None = None,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[Size | Sequence[int]] = ((), ()),
        **kwargs: Any,
    ) -> None:
        if features < 1:  # one feature is an ElementWiseTransform (``__new__``)
            raise FlowConfigError(f"GeneralCouplingTransform needs features >= 1, got {features}")
        mask = torch.arange(features) % 2 == 1 if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != (features,):
            raise ValueError(f"'mask' should have shape ({features},), got {tuple(mask.shape)}")
        self.features_a = int(mask.sum())
        self.features_b = features - self.features_a
        if self.features_a == 0 or self.features_b == 0:
            raise ValueError("'mask' should have at least one True and one False entry")
        self.features = int(features)
        self.context = int(context)
        self.mask = mask
        self.univariate = univariate
        self.shapes = tuple(Size(s) for s in shapes)
        self.total = sum(prod(s) for s in self.shapes)
        self.hyper = MLP(self.features_a + context, self.features_b * self.total, **kwargs)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"hyper": self.hyper.init(generator, dtype=dtype, device=device)}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {"mask": self.mask.to(device)}

    def meta(self, hyper: Mapping[str, Any], c: Tensor | None, x_a: Tensor) -> Transform:
        r"""The element-wise transform of :math:`x_b` given :math:`x_a` and :math:`c`."""

        phi = self.hyper._apply(hyper, with_context(x_a, c), {})
        return univariate_from(phi, self.features_b, self.univariate, self.shapes)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Transform:
        return CouplingTransform(Partial(self.meta, (params["hyper"], c)), state["mask"], self.features_b)


class NICE(Flow):
    r"""NICE / RealNVP coupling flow on :math:`\mathcal{N}(0, I)`.

    Affine couplings by default (as RealNVP); pass ``univariate=AdditiveTransform,
    shapes=[()]`` for NICE's additive couplings. Same signature as ``zuko.flows.NICE``.

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516
        | Density estimation using Real NVP (Dinh et al., 2016)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> flow = RealNVP(4, 2)
        >>> d = flow.apply(flow.init(), torch.randn(2))
        >>> d.log_prob(torch.randn(4)).shape
        torch.Size([])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        transforms: int = 3,
        randmask: bool = False,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        specs = []
        for i in range(transforms):
            if randmask:
                mask = torch.randperm(features) % 2 == i % 2
            else:
                mask = torch.arange(features) % 2 == i % 2
            specs.append(GeneralCouplingTransform(features=features, context=context, mask=mask, **kwargs))
        super().__init__(with_batch_norm(specs, features) if batch_norm else specs, standard_base(features))
        self.features = int(features)


class RealNVP(NICE):
    r"""Alias of :class:`NICE` (affine couplings), as in Zuko."""
