r"""Transform base classes: pytree transforms, inverse, composition, dependence.

A transform here is a :class:`torch.distributions.Transform` whose whole contract is two
methods (as FlowJAX's bijections):

* ``call_and_ladj(x) -> (y, log|det J_f(x)|)``;
* ``inverse_and_ladj(y) -> (x, log|det J_{f^{-1}}(y)|)``.

Everything else is derived once, in :class:`FunctionalTransform`: ``__call__`` and
``_call`` (:math:`y`), ``inv`` and ``_inverse`` (:math:`x`), ``log_abs_det_jacobian``.
A class overrides ``_call`` / ``_inverse`` only where the value alone is much cheaper
than the value and its log-determinant (an ODE's trace, a second conditioner pass), and
the structural transforms (inverse, composition, dependence) forward those cheap paths.

It is also a pytree (its tensors are leaves), so a function returning a transform
can be vmapped. No caching, no weak references and no ``__init__`` logic that
unflattening would skip.
"""

from __future__ import annotations

__all__ = [
    "ComposedTransform",
    "DependentTransform",
    "FunctionalTransform",
    "InverseTransform",
    "call_and_ladj",
    "inverse_and_ladj",
    "sum_rightmost",
    "take",
]

from collections.abc import Sequence
from typing import Any

import torch
from torch import Size, Tensor
from torch.distributions import Transform, constraints

from ..checks import check_batch, check_dtype, check_event, promotes_over
from ..pytree import first_float, register_pytree_class


def sum_rightmost(x: Tensor, n: int) -> Tensor:
    r"""Sums the ``n`` rightmost dimensions of ``x``."""

    return x.sum(dim=tuple(range(-n, 0))) if n > 0 else x


def bound_of(bound: float | Tensor) -> float | Tensor:
    r"""A transform's bound as a Python float (static configuration), or the tensor itself
    when it holds one bound per coordinate (Zuko's transforms take either).

    Example:
        >>> bound_of(torch.tensor(2.0)), bound_of(torch.tensor([1.0, 3.0]))
        (2.0, tensor([1., 3.]))
    """

    return bound if isinstance(bound, Tensor) and bound.numel() > 1 else float(bound)


class FunctionalTransform(Transform):
    r"""Base class of this library's transforms (pytree, cache-free).

    A subclass defines the contract, :meth:`call_and_ladj` and :meth:`inverse_and_ladj`;
    the rest is derived here:

    .. math:: f(x) = \texttt{call\_and\_ladj}(x)_0, \quad
        f^{-1}(y) = \texttt{inverse\_and\_ladj}(y)_0, \quad
        \log |\det J_f(x)| = \texttt{call\_and\_ladj}(x)_1 .

    ``_call`` / ``_inverse`` may be overridden by a cheaper value-only path, where a
    benchmark shows it matters. Torch's caching is off (``cache_size`` 0,
    :meth:`with_cache` returns the transform itself): a pytree must not hold the last
    input. Subclasses are registered with
    :func:`~lazydist_functional.pytree.register_pytree_class`.

    Example:
        >>> from lazydist_functional.transforms import AdditiveTransform
        >>> t = AdditiveTransform(torch.tensor(1.0))  # defines only the two methods
        >>> x = torch.tensor([0.0, 2.0])
        >>> t(x), t.inv(t(x)), t.log_abs_det_jacobian(x, t(x))
        (tensor([1., 3.]), tensor([0., 2.]), tensor([0., 0.]))
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    _cache_size = 0
    _inv = None

    def __init__(self, cache_size: int = 0) -> None:
        r"""``cache_size`` (torch's and Zuko's argument, 0 or 1) is accepted for their
        signatures; values are recomputed rather than cached (the same results)."""

        if cache_size not in (0, 1):
            raise ValueError(f"cache_size should be 0 or 1, got {cache_size!r}")

    def __call__(self, x: Tensor) -> Tensor:
        return self._call(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def inv(self) -> Transform:
        return InverseTransform(self)

    def with_cache(self, cache_size: int = 1) -> Transform:
        return self

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Returns :math:`y = f(x)` and :math:`\log |\det J_f(x)|`."""

        raise NotImplementedError(f"{type(self).__name__} does not define 'call_and_ladj'")

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        r"""Returns :math:`x = f^{-1}(y)` and :math:`\log |\det J_{f^{-1}}(y)|`."""

        raise NotImplementedError(f"{type(self).__name__} does not define 'inverse_and_ladj'")

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self.inverse_and_ladj(y)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]

    def forward_shape(self, shape: Size) -> Size:
        return shape

    def inverse_shape(self, shape: Size) -> Size:
        return shape


@register_pytree_class(children=("transform",))
class InverseTransform(FunctionalTransform):
    r"""The inverse :math:`f^{-1}` of a transform :math:`f`."""

    def __init__(self, transform: FunctionalTransform) -> None:
        self.transform = transform

    def __repr__(self) -> str:
        return f"Inverse({self.transform!r})"

    @property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        return self.transform.codomain

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return self.transform.domain

    @property
    def inv(self) -> FunctionalTransform:
        return self.transform

    @property
    def sign(self) -> int:
        return self.transform.sign  # the inverse of an increasing map increases (torch raises where undefined)

    # The value-only paths forward the wrapped transform's (maybe cheaper) ones.
    def _call(self, x: Tensor) -> Tensor:
        return self.transform._inverse(x)

    def _inverse(self, y: Tensor) -> Tensor:
        return self.transform._call(y)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return inverse_and_ladj(self.transform, x)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return call_and_ladj(self.transform, y)

    def forward_shape(self, shape: Size) -> Size:
        return self.transform.inverse_shape(shape)

    def inverse_shape(self, shape: Size) -> Size:
        return self.transform.forward_shape(shape)


def _event_dim(c: Any) -> int:
    return getattr(c, "event_dim", 0)


@register_pytree_class(children=("transforms",))
class ComposedTransform(FunctionalTransform):
    r"""Composition :math:`f = f_n \circ \dots \circ f_1`.

    .. math:: \log |\det J_f(x)| = \sum_i \log |\det J_{f_i}(x_{i-1})|

    where rightmost dimensions are summed so that every term has the composite's
    event dimension.
    """

    def __init__(self, *transforms: Transform) -> None:
        if not transforms:
            raise ValueError("ComposedTransform needs at least one transform")
        self.transforms = list(transforms)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}): {t!r}".replace("\n", "\n  ") for i, t in enumerate(self.transforms))
        return f"ComposedTransform(\n{inner}\n)"

    @property
    def _event_dims(self) -> tuple[int, int]:
        dim = 0
        for t in reversed(self.transforms):
            dim = _event_dim(t.domain) + max(dim - _event_dim(t.codomain), 0)
        domain_dim = dim
        for t in self.transforms:
            dim += _event_dim(t.codomain) - _event_dim(t.domain)
        return domain_dim, dim

    @property
    def domain_dim(self) -> int:
        r"""The event dimension of the composite's domain (Zuko's attribute)."""

        return self._event_dims[0]

    @property
    def codomain_dim(self) -> int:
        r"""The event dimension of the composite's codomain (Zuko's attribute)."""

        return self._event_dims[1]

    @property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        d = self.transforms[0].domain
        extra = self._event_dims[0] - _event_dim(d)
        return constraints.independent(d, extra) if extra > 0 else d

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        d = self.transforms[-1].codomain
        extra = self._event_dims[1] - _event_dim(d)
        return constraints.independent(d, extra) if extra > 0 else d

    @property
    def inv(self) -> Transform:
        return ComposedTransform(*(t.inv for t in reversed(self.transforms)))

    # The value-only paths compose the parts' value-only paths (e.g. an ODE without its trace).
    def _call(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def _inverse(self, y: Tensor) -> Tensor:
        for t in reversed(self.transforms):
            y = t.inv(y)
        return y

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dim = self._event_dims[0]
        total = None  # not 0: ``0 + ladj`` is one more operation (three under ``vmap``)
        for t in self.transforms:
            x, ladj = call_and_ladj(t, x)
            ladj = sum_rightmost(ladj, dim - _event_dim(t.domain))
            total = ladj if total is None else total + ladj
            dim += _event_dim(t.codomain) - _event_dim(t.domain)
        return x, total

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return call_and_ladj(self.inv, y)

    def forward_shape(self, shape: Size) -> Size:
        for t in self.transforms:
            shape = t.forward_shape(shape)
        return shape

    def inverse_shape(self, shape: Size) -> Size:
        for t in reversed(self.transforms):
            shape = t.inverse_shape(shape)
        return shape


@register_pytree_class(children=("base",), static=("reinterpreted", "features", "batch"))
class DependentTransform(FunctionalTransform):
    r"""Treats the ``reinterpreted`` rightmost dimensions of a transform as one event.

    .. math:: \log |\det J(x)| = \sum_{\text{rightmost dims}} \log |\det J_{\text{base}}(x)|

    Arguments:
        base: the transform.
        reinterpreted: the number of rightmost dimensions forming the event.
        features: the size :math:`D` of the last event dimension, if known: inputs are
            checked to have shape :math:`(*, D)` (an element-wise base would broadcast a
            wrong size silently).
        batch: the batch shape of the base's parameters (a context's), if known: inputs
            are checked to broadcast with it.
    """

    def __init__(self, base: Transform, reinterpreted: int, features: int | None = None,
                 batch: Sequence[int] | None = None) -> None:
        self.base = base
        self.reinterpreted = int(reinterpreted)
        self.features = None if features is None else int(features)
        self.batch = None if batch is None else tuple(batch)

    def __repr__(self) -> str:
        return f"DependentTransform({self.base!r}, {self.reinterpreted})"

    @property
    def domain(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.independent(self.base.domain, self.reinterpreted)

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.independent(self.base.codomain, self.reinterpreted)

    @property
    def inv(self) -> Transform:
        return DependentTransform(self.base.inv, self.reinterpreted, self.features, self.batch)

    def _check(self, x: Tensor) -> None:
        if self.features is not None:
            check_input(self, x, (self.features,), self.batch)

    # The value-only paths forward the base's.
    def _call(self, x: Tensor) -> Tensor:
        self._check(x)
        return self.base(x)

    def _inverse(self, y: Tensor) -> Tensor:
        self._check(y)
        return self.base.inv(y)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        y, ladj = call_and_ladj(self.base, x)
        return y, sum_rightmost(ladj, self.reinterpreted)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check(y)
        x, ladj = call_and_ladj(self.base.inv, y)
        return x, sum_rightmost(ladj, self.reinterpreted)


def torch_call_and_ladj(t: Transform, x: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`(f(x), \log |\det J_f(x)|)` of any torch transform, from its ``__call__`` and
    ``log_abs_det_jacobian`` (what Zuko, and the adapter, install as torch's
    ``Transform.call_and_ladj``)."""

    y = t(x)
    return y, t.log_abs_det_jacobian(x, y)


def call_and_ladj(t: Transform, x: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`(f(x), \log |\det J_f(x)|)` for any transform: its own ``call_and_ladj`` when
    it has one (this library's, or torch's once patched), else :func:`torch_call_and_ladj`
    (the core never patches torch).

    Example:
        >>> call_and_ladj(torch.distributions.ExpTransform(), torch.zeros(2))
        (tensor([1., 1.]), tensor([0., 0.]))
    """

    method = getattr(t, "call_and_ladj", None)
    return method(x) if method is not None else torch_call_and_ladj(t, x)


def inverse_and_ladj(t: Transform, y: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`(f^{-1}(y), \log |\det J_{f^{-1}}(y)|)` for any transform: its own
    ``inverse_and_ladj`` when it has one, else :func:`call_and_ladj` of ``t.inv``.

    Example:
        >>> inverse_and_ladj(torch.distributions.ExpTransform(), torch.ones(2))
        (tensor([0., 0.]), tensor([-0., -0.]))
    """

    method = getattr(t, "inverse_and_ladj", None)
    return method(y) if method is not None else call_and_ladj(t.inv, y)


def check_input(t: Transform, x: Tensor, event_shape: Sequence[int], batch: Sequence[int] | None = None,
                layer: bool = False) -> None:
    r"""Checks what is given to transform ``t``: a tensor with ``event_shape`` on the right,
    a batch shape that broadcasts with ``batch`` (the context's, if known) and the dtype of
    ``t``'s parameters, or a wider float one (element-wise math promotes it, as in Zuko; a
    layer it meets checks it) unless ``t`` is itself a ``layer`` (matrix products with its
    parameters) (shapes and dtypes only)."""

    what = f"the input of {type(t).__name__}"
    check_event(x, event_shape, what)
    if batch is not None:
        check_batch(what, x.shape, "the context", batch)
    ref = first_float(t)
    if ref is not None and (layer or not promotes_over(x, ref.dtype)):  # a wider x: checked by the layer it meets
        check_dtype(what, x, ref.dtype)


def take(x: Tensor, index: Tensor, dim: int = -1) -> Tensor:
    r"""``x.index_select(dim, index)`` (``dim`` counted from the right), where ``index``
    may carry leading batch dimensions (e.g. a permutation stacked over K parameter sets)
    that broadcast with the dimensions of ``x`` left of ``dim``.

    Example:
        >>> x = torch.arange(6.0).reshape(2, 3)
        >>> take(x, torch.tensor([[2, 0], [1, 1]]))
        tensor([[2., 0.],
                [4., 4.]])
        >>> take(x, torch.tensor([1, 0]), dim=-2)
        tensor([[3., 4., 5.],
                [0., 1., 2.]])
    """

    if index.dim() == 1:
        if torch.compiler.is_compiling():  # index_select's vmap rule specializes the vmapped size
            # (moved to the end, not ``x[(slice(None),) * k + (index,)]``: torch 2.11's dynamo
            # cannot trace that tuple once it has made ``dim`` symbolic)
            return torch.movedim(torch.movedim(x, dim, -1)[..., index], -1, dim)
        return torch.index_select(x, dim, index)  # much cheaper than advanced indexing, also under vmap
    dim = dim % x.dim()
    rest = x.shape[dim + 1 :]
    batch = torch.broadcast_shapes(x.shape[:dim], index.shape[:-1])
    x = x.expand(*batch, x.shape[dim], *rest)
    index = index.reshape(*index.shape, *(1 for _ in rest)).expand(*batch, index.shape[-1], *rest)
    return x.gather(len(batch), index)
