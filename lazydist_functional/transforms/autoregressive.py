r"""Autoregressive and coupling transforms driven by a conditioner."""

from __future__ import annotations

__all__ = ["AutoregressiveTransform", "CouplingTransform"]

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Transform, constraints

from ..pytree import register_pytree_class
from .base import FunctionalTransform, check_input, take


@register_pytree_class(children=("meta",), static=("passes", "features"))
class AutoregressiveTransform(FunctionalTransform):
    r"""Autoregressive transform :math:`y_i = f(x_i \mid x_{<i})`.

    ``meta(x)`` returns the element-wise transform whose parameters depend only on
    the predecessors of each feature. The forward needs one call of ``meta``; the
    inverse runs exactly ``passes`` fixed iterations
    :math:`x \leftarrow \mathrm{meta}(x)^{-1}(y)` from :math:`x = 0` (no data-dependent
    control flow, so it vmaps and compiles).

    Arguments:
        meta: a pytree callable ``x -> Transform`` (e.g. a
            :class:`~lazydist_functional.pytree.Partial`).
        passes: the number of sequential passes of the inverse.
        features: the number of features :math:`D`, if known: inputs are checked to
            have shape :math:`(*, D)` (shapes only, free under ``vmap``/``compile``).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, meta: Callable[[Tensor], Transform], passes: int, features: int | None = None) -> None:
        self.meta = meta
        self.passes = int(passes)
        self.features = None if features is None else int(features)

    def __repr__(self) -> str:
        return "AutoregressiveTransform()"  # Zuko's text

    def _check(self, x: Tensor) -> None:
        if self.features is not None:
            check_input(self, x, (self.features,), layer=True)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        return self.meta(x).call_and_ladj(x)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check(y)
        x = torch.zeros_like(y)
        for _ in range(self.passes - 1):
            x = self.meta(x).inv(y)
        return self.meta(x).inv.call_and_ladj(y)


@register_pytree_class(children=("meta", "mask"), static=("features_b",))
class CouplingTransform(FunctionalTransform):
    r"""Coupling transform: :math:`y_a = x_a`, :math:`y_b = f(x_b \mid x_a)`.

    The split follows a boolean ``mask`` (True: the constant part :math:`x_a`).
    Indices come from a stable sort of the mask, so the mask may be a loaded buffer
    while shapes stay static (``features_b``, the number of False entries, is
    static configuration).

    .. math:: \log |\det J(x)| = \log |\det J_f(x_b \mid x_a)|

    Arguments:
        meta: a pytree callable ``x_a -> Transform`` acting on :math:`x_b`.
        mask: boolean tensor of shape :math:`(D,)`.
        features_b: the number of transformed features (False entries of ``mask``);
            by default counted from ``mask`` (a concrete tensor: give it under ``vmap`` or
            ``torch.compile`` when the mask is traced).

    Example:
        >>> from lazydist_functional.transforms import MonotonicAffineTransform
        >>> t = CouplingTransform(lambda xa: MonotonicAffineTransform(xa, torch.zeros_like(xa)),
        ...                       torch.tensor([True, False]))
        >>> t(torch.tensor([1.0, 2.0]))
        tensor([1., 3.])
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, meta: Callable[[Tensor], Transform], mask: Tensor, features_b: int | None = None) -> None:
        self.meta = meta
        self.mask = mask
        self.features_b = int((~mask.bool()).sum()) if features_b is None else int(features_b)

    def __repr__(self) -> str:
        return "CouplingTransform()"  # Zuko's text

    @property
    def idx_a(self) -> Tensor:
        r"""The indices of the constant features :math:`x_a` (Zuko's attribute)."""

        return self.mask.bool().nonzero().squeeze(-1)

    @property
    def idx_b(self) -> Tensor:
        r"""The indices of the transformed features :math:`x_b` (Zuko's attribute)."""

        return (~self.mask.bool()).nonzero().squeeze(-1)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(x_a, x_b)`, as Zuko's ``split`` (eager helper: the indices depend on the mask's
        values, so it is not for ``vmap`` or ``torch.compile``)."""

        return take(x, self.idx_a), take(x, self.idx_b)

    def merge(self, x_a: Tensor, x_b: Tensor, shape: torch.Size) -> Tensor:
        r"""The tensor of ``shape`` with the features of :math:`x_a` and :math:`x_b` in place, as
        Zuko's ``merge`` (the inverse of :meth:`split`; an eager helper too)."""

        x_a, x_b = x_a.expand(*shape[:-1], x_a.shape[-1]), x_b.expand(*shape[:-1], x_b.shape[-1])
        order = torch.argsort(torch.cat((self.idx_a, self.idx_b)))
        return take(torch.cat((x_a, x_b), dim=-1), order)

    def _run(self, x: Tensor, inverse: bool, with_ladj: bool = True) -> tuple[Tensor, Tensor | None]:
        check_input(self, x, self.mask.shape[-1:], layer=True)
        mask, nb = self.mask.bool(), self.features_b
        # A stable sort of the mask lists the False entries (x_b) first, then the True ones (x_a).
        perm = torch.argsort(mask, dim=-1, stable=True)
        index_b = perm[..., :nb]
        x_b, x_a = take(x, index_b), take(x, perm[..., nb:])
        f = self.meta(x_a)
        f = f.inv if inverse else f
        y_b, ladj = f.call_and_ladj(x_b) if with_ladj else (f(x_b), None)
        return _merge(x, y_b, mask, index_b), ladj

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, inverse=False)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(y, inverse=True)

    def _call(self, x: Tensor) -> Tensor:  # the value alone (sampling): no log-determinant
        return self._run(x, inverse=False, with_ladj=False)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self._run(y, inverse=True, with_ladj=False)[0]


def _merge(x: Tensor, y_b: Tensor, mask: Tensor, index_b: Tensor) -> Tensor:
    r""":math:`y` with :math:`y_a = x_a` (``mask`` True) and the features ``index_b`` from
    ``y_b``. ``x`` may have fewer batch dimensions than ``y_b`` (one ``x``, a batch of
    contexts): they broadcast.

    Eagerly (one mask) a single ``index_copy`` into ``x``. While compiling, or for masks
    stacked over parameter sets, a ``where`` over ``y_b`` gathered back to :math:`D`
    features (feature :math:`i` reads ``y_b[rank of i among the False entries]``): the
    ``index_copy``, ``cat`` and ``index_select`` batching rules specialize the ``vmap``
    size under ``torch.compile(dynamic=True)``, indexing and ``where`` do not. One transformed
    feature broadcasts instead of being gathered (inductor miscompiles that gather's backward,
    an accumulating ``index_put`` into a zero buffer of width 1).
    """

    if index_b.dim() == 1 and not torch.compiler.is_compiling():
        if x.shape[:-1] != y_b.shape[:-1]:  # (an expand to the same shape is still an operation)
            batch = torch.broadcast_shapes(x.shape[:-1], y_b.shape[:-1])
            x, y_b = x.expand(*batch, x.shape[-1]), y_b.expand(*batch, y_b.shape[-1])
        return x.index_copy(-1, index_b, y_b)
    if y_b.shape[-1] == 1:  # broadcast: inductor miscompiles the backward of a gather from width 1
        return torch.where(mask, x, y_b)
    rank_b = (torch.cumsum(~mask, dim=-1) - 1).clamp_min(0)  # True entries read any valid index
    return torch.where(mask, x, take(y_b, rank_b))
