r"""Masked autoregressive transform whose inverse solves one group of features per pass."""

from __future__ import annotations

__all__ = ["GroupedMaskedAutoregressiveTransform"]

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Transform

from ..pytree import Partial
from ..transforms import AutoregressiveTransform, DependentTransform, take
from ..transforms.grouped import GroupedAutoregressiveTransform
from ._conditioner import unpack, with_context
from .autoregressive import MaskedAutoregressiveTransform


class GroupedMaskedAutoregressiveTransform(MaskedAutoregressiveTransform):
    r""":class:`MaskedAutoregressiveTransform` (same arguments, parameters and state)
    whose inverse inverts only the features of the current group in each pass
    (:class:`~lazydist_functional.transforms.grouped.GroupedAutoregressiveTransform`).

    Worth it when the univariate inverse is iterative (monotonic transforms inverted by
    root finding): the inverse costs one root solve per feature instead of one per
    feature and pass. The groups come from the ``order`` buffer (so a loaded checkpoint's
    order is used); with an explicit ``adjacency`` the plain inverse is used.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Static group sizes, counted once from the spec's order (Python ints): derived in
        # ``apply`` they would be data-dependent under ``torch.compile``.
        self.sizes: tuple[int, ...] | None = None if self.order is None else tuple(
            int(n) for n in torch.bincount(self.order).tolist()
        )

    def select(self, phi: Tensor, index: Tensor) -> Tensor:
        r"""Rows ``index`` of ``phi`` of shape :math:`(*, D, T)`."""

        return take(phi, index, dim=-2)

    def univariate_of(self, phi: Tensor, extra: Any) -> Transform:
        r"""The element-wise transform of the rows of ``phi`` (shape :math:`(*, G, T)`)."""

        return DependentTransform(self.univariate(*unpack(phi, self.shapes)), 1)

    def _phi(self, hyper, masks, c: Tensor | None, x: Tensor) -> Tensor:
        phi = self.hyper._apply(hyper, with_context(x, c), masks)
        return phi.reshape(*phi.shape[:-1], self.features, self.total)

    def meta_all(self, hyper, masks, extra, c: Tensor | None, x: Tensor) -> Transform:
        return self.univariate_of(self._phi(hyper, masks, c, x), extra)

    def meta_group(self, hyper, masks, extra, c: Tensor | None, x: Tensor, index: Tensor) -> Transform:
        return self.univariate_of(self.select(self._phi(hyper, masks, c, x), index), self.select_extra(extra, index))

    def select_extra(self, extra: Any, index: Tensor) -> Any:
        return extra

    def _extra(self, params: Mapping[str, Any]) -> Any:
        return None

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Transform:
        args = (params["hyper"], state["hyper"], self._extra(params), c)
        if self.order is None:
            return AutoregressiveTransform(Partial(self.meta_all, args), self.passes, features=self.features)
        return GroupedAutoregressiveTransform(
            Partial(self.meta_all, args), Partial(self.meta_group, args), state["order"], self.sizes
        )
