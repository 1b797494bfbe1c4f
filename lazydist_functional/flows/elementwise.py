r"""Lazy element-wise transforms (each feature its own univariate transform)."""

from __future__ import annotations

__all__ = ["ElementWiseTransform"]

from collections.abc import Callable, Mapping, Sequence
from math import prod
from typing import Any

import torch
from torch import Size, Tensor
from torch.distributions import Transform

from ..nn import MLP, on_device
from ..spec import Spec
from ..transforms import DependentTransform, MonotonicAffineTransform
from ._conditioner import unpack


class ElementWiseTransform(Spec):
    r"""Lazy element-wise transform: the univariate parameters of each feature come from
    an MLP of the context, or are free parameters (``"phi.<i>"``, drawn from
    :math:`\mathcal{N}(0, 1)`) without context. Same signature and parameter names as
    ``zuko.flows.gaussianization.ElementWiseTransform``.

    Arguments:
        features: the number of features.
        context: the number of context features.
        univariate: the univariate transform constructor, or a parametrized univariate
            (a spec with ``init`` and ``transform(params, *phi)``, such as
            :class:`~lazydist_functional.flows.MNN`, whose parameters live under
            ``"univariate"`` as in Zuko's NAF/UNAF with one feature).
        shapes: the shapes of its parameters.
        kwargs: passed to :class:`~lazydist_functional.nn.MLP`.

    Example:
        >>> t = ElementWiseTransform(3, 4)
        >>> f = t.apply(t.init(), torch.randn(4))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __init__(self, features: int, context: int = 0,
                 univariate: Callable[..., Transform] = MonotonicAffineTransform,
                 shapes: Sequence[Size | Sequence[int]] = ((), ()), **kwargs: Any) -> None:
        self.features = int(features)
        self.context = int(context)
        self.univariate = univariate
        self.shapes = tuple(Size(s) for s in shapes)
        self.total = sum(prod(s) for s in self.shapes)
        self.hyper = MLP(context, features * self.total, **kwargs) if context > 0 else None

    @property
    def parametrized(self) -> bool:
        r"""Whether the univariate transform has trainable parameters of its own."""

        return callable(getattr(self.univariate, "init", None)) and callable(getattr(self.univariate, "transform", None))

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        params = {"univariate": self.univariate.init(generator, dtype=dtype, device=device)} if self.parametrized else {}
        return params | self._init_phi(generator, dtype, device)

    def _init_phi(self, generator, dtype, device) -> dict[str, Any]:
        if self.hyper is not None:
            return {"hyper": self.hyper.init(generator, dtype=dtype, device=device)}
        dtype = dtype or torch.get_default_dtype()
        phi = {}
        for i, s in enumerate(self.shapes):
            shape = (self.features, *s)
            phi[str(i)] = on_device(lambda: torch.randn(shape, generator=generator, dtype=dtype), shape, dtype, device)
        return {"phi": phi}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Transform:
        if self.hyper is None:
            phi = [params["phi"][str(i)] for i in range(len(self.shapes))]
        else:
            out = self.hyper._apply(params["hyper"], c, {})
            phi = unpack(out.reshape(*out.shape[:-1], self.features, self.total), self.shapes)
        if self.parametrized:
            univariate = self.univariate.transform(params["univariate"], *phi)
        else:
            univariate = self.univariate(*phi)
        batch = None if c is None or self.hyper is None else c.shape[:-1]
        return DependentTransform(univariate, 1, features=self.features, batch=batch)
