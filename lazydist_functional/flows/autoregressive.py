r"""Masked autoregressive transforms and flows (MAF)."""

from __future__ import annotations

__all__ = ["MAF", "MaskedAutoregressiveTransform"]

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from math import ceil, prod
from typing import Any

import torch
from torch import Size, Tensor
from torch.distributions import Transform

from ..nn import MaskedMLP, on_device
from ..pytree import Partial
from ..spec import Spec
from ..transforms import AutoregressiveTransform, MonotonicAffineTransform
from ._conditioner import univariate_from, with_context
from .batchnorm import with_batch_norm
from .common import FlowConfigError, autoregressive_layers, standard_base
from .core import Flow
from .elementwise import ElementWiseTransform


def _dag_depth(adjacency: Tensor) -> int:
    r"""Number of topological generations of the DAG ``adjacency[i, j]: j -> i``
    (the passes an inverse needs)."""

    A = adjacency.clone()
    remaining = torch.ones(A.shape[0], dtype=torch.bool)
    depth = 0
    while bool(remaining.any()):
        ready = remaining & ~(A[:, remaining].any(dim=1))
        if not bool(ready.any()):
            raise FlowConfigError("The graph contains cycles.")
        remaining &= ~ready
        depth += 1
    return depth


class MaskedAutoregressiveTransform(Spec):
    r"""Lazy masked autoregressive transform :math:`y_i = f(x_i | x_{<i}, c)`.

    The parameters of each univariate transform come from a masked MLP over
    :math:`(x, c)`; features are grouped into ``passes`` autoregressive blocks by
    ``order``. Same signature and defaults as ``zuko.flows.MaskedAutoregressiveTransform``.

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        features: the number of features :math:`D` (at least 2).
        context: the number of context features.
        passes: the number of passes of the inverse (``None``: fully autoregressive).
        order: a feature ordering (default ``range(features)``).
        adjacency: an explicit dependency graph (features, features [+ context]) with
            ones on the diagonal; replaces ``order`` and ``passes``.
        univariate: the univariate transform constructor.
        shapes: the shapes of its parameters.
        kwargs: passed to :class:`~lazydist_functional.nn.MaskedMLP`.

    Example:
        >>> t = MaskedAutoregressiveTransform(3, 4)
        >>> params = t.init(torch.Generator().manual_seed(0))
        >>> f = t.apply(params, torch.randn(4))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __new__(
        cls,
        features: int | None = None,
        context: int = 0,
        passes: int | None = None,
        order: Tensor | Sequence[int] | None = None,
        adjacency: Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Spec:
        if features == 1:  # as Zuko: one feature has no autoregressive structure
            return ElementWiseTransform(features, context, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        features: int,
        context: int = 0,
        passes: int | None = None,
        order: Tensor | Sequence[int] | None = None,
        adjacency: Tensor | None = None,
        univariate: Callable[..., Transform] = MonotonicAffineTransform,
        shapes: Sequence[Size | Sequence[int]] = ((), ()),
        **kwargs: Any,
    ) -> None:
        if features < 1:  # one feature is an ElementWiseTransform (``__new__``)
            raise FlowConfigError(f"MaskedAutoregressiveTransform needs features >= 1, got {features}")
        self.features = int(features)
        self.context = int(context)
        self.univariate = univariate
        self.shapes = tuple(Size(s) for s in shapes)
        self.total = sum(prod(s) for s in self.shapes)

        if adjacency is None:
            passes = features if passes is None else passes
            order = torch.arange(features) if order is None else torch.as_tensor(order, dtype=torch.long)
            if order.shape != (features,):
                raise FlowConfigError(f"'order' should have {features} elements, got shape {tuple(order.shape)}")
            self.passes = min(max(int(passes), 1), features)
            self.order = torch.div(order, ceil(features / self.passes), rounding_mode="floor")
            A = self.order[:, None] > self.order
            A_context = None
        else:
            adjacency = torch.as_tensor(adjacency, dtype=torch.bool)
            if adjacency.dim() != 2:
                raise FlowConfigError(f"'adjacency' should be a matrix, got shape {tuple(adjacency.shape)}")
            if adjacency.shape[0] != features:
                raise FlowConfigError(f"'adjacency' should have {features} rows, got {adjacency.shape[0]}")
            if adjacency.shape[1] not in (features, features + context):
                raise FlowConfigError(
                    f"'adjacency' should have {features} or {features + context} columns, got {adjacency.shape[1]}."
                )
            A_context = adjacency[:, features:] if adjacency.shape[1] > features else None
            A = adjacency[:, :features]
            if not bool(A.diag().all()):
                raise FlowConfigError("'adjacency' should have ones on the diagonal.")
            A = A & ~torch.eye(features, dtype=torch.bool)
            self.passes = _dag_depth(A)
            self.order = None
        if context > 0:
            A_context = torch.ones(features, context, dtype=torch.bool) if A_context is None else A_context
            A = torch.cat((A, A_context), dim=1)
        self.hyper = MaskedMLP(torch.repeat_interleave(A, self.total, dim=0), **kwargs)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"hyper": self.hyper.init(generator, dtype=dtype, device=device)}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.order is not None:
            state["order"] = on_device(lambda: self.order, (self.features,), torch.long, device)
        state["hyper"] = self.hyper.init_state(dtype=dtype, device=device)
        return state

    def meta(self, hyper: Mapping[str, Any], masks: Mapping[str, Any], c: Tensor | None, x: Tensor) -> Transform:
        r"""The element-wise transform whose parameters depend on :math:`x_{<i}` and :math:`c`."""

        phi = self.hyper._apply(hyper, with_context(x, c), masks)
        return univariate_from(phi, self.features, self.univariate, self.shapes)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Transform:
        return AutoregressiveTransform(
            Partial(self.meta, (params["hyper"], state["hyper"], c)), self.passes, features=self.features
        )


class MAF(Flow):
    r"""Masked autoregressive flow (MAF): autoregressive affine transforms on :math:`\mathcal{N}(0, I)`.

    Same signature and defaults as ``zuko.flows.MAF``. Orders alternate ascending /
    descending, or are drawn at construction with ``randperm=True`` (they are part
    of the state, so a ``state_dict`` round trip restores them).

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Example:
        >>> flow = MAF(3, 4, transforms=2)
        >>> params = flow.init(torch.Generator().manual_seed(0))
        >>> c = torch.randn(8, 4)
        >>> d = flow.apply(params, c)
        >>> d.log_prob(d.sample()).shape
        torch.Size([8])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        transforms: int = 3,
        randperm: bool = False,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        layer = partial(MaskedAutoregressiveTransform, features=features, context=context, **kwargs)
        layers = autoregressive_layers(layer, features, transforms, randperm)
        super().__init__(with_batch_norm(layers, features) if batch_norm else layers, self.base_of(features))
        self.features = int(features)

    @staticmethod
    def base_of(features: int) -> Spec:
        r"""The base distribution spec: :math:`\mathcal{N}(0, I)` (subclasses may override)."""

        return standard_base(features)
