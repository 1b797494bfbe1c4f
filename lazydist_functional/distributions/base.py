r"""Base classes of this library's distributions: pytrees whose shapes derive from leaves."""

from __future__ import annotations

__all__ = ["FunctionalDistribution", "IndependentBase", "check_sample"]

from collections.abc import Sequence

import torch
from torch import Size, Tensor
from torch.distributions import Distribution, Independent

from ..checks import ShapeError, broadcasts, check_dtype, check_event, promotes_over
from .draws import TORCH, Draws, KeyedDraws, member_keys


class FunctionalDistribution(Distribution):
    r"""A :class:`torch.distributions.Distribution` that is also a pytree.

    Batch and event shapes are *properties computed from the leaves*, never stored,
    because a distribution returned by :func:`torch.func.vmap` is unflattened with
    leaves that gained a batch dimension (``_batch_shape``/``_event_shape``, which
    torch's own methods read, are properties too). Argument validation is off (it
    branches on values, which breaks ``vmap``); checks here are on shapes only.

    Constructors broadcast the tensor leaves to the full batch shape (views, no copy):
    ``vmap`` gives every returned leaf one leading dimension, which keeps broadcastable
    leaves broadcastable only if none had fewer batch dimensions than the others.
    """

    arg_constraints: dict = {}
    _validate_args = False
    has_rsample = True

    def __init__(self) -> None:  # noqa: D107 - shapes are derived, nothing to store
        pass

    @property
    def _batch_shape(self) -> Size:  # type: ignore[override]
        return self.batch_shape

    @property
    def _event_shape(self) -> Size:  # type: ignore[override]
        return self.event_shape

    @property
    def batch_shape(self) -> Size:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def event_shape(self) -> Size:  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:  # pragma: no cover - abstract
        r"""A draw of shape ``sample_shape + batch_shape + event_shape`` with the noise of
        ``draws`` (:mod:`~lazydist_functional.distributions.draws`)."""

        raise NotImplementedError

    def _draws(self, key: Tensor | None) -> Draws:
        return TORCH if key is None else KeyedDraws(member_keys(key, self.batch_shape))

    def rsample(self, sample_shape: Size = Size(), *, key: Tensor | None = None) -> Tensor:
        r"""A reparameterized draw. Without ``key``, from torch's generator; with a key
        (:mod:`lazydist_functional.random`), a pure function of the key: member ``b`` of a
        batch of shape ``B`` uses ``split(key, B)[b]`` (``key`` itself when ``B = ()``)."""

        if not self.has_rsample:
            raise NotImplementedError(f"{type(self).__name__} is not reparameterizable; use sample()")
        return self._draw(Size(sample_shape), self._draws(key))

    def sample(self, sample_shape: Size = Size(), *, key: Tensor | None = None) -> Tensor:
        r"""A draw without gradient (see :meth:`rsample` for ``key``)."""

        with torch.no_grad():
            return self._draw(Size(sample_shape), self._draws(key))

    def rsample_and_log_prob(self, sample_shape: Size = Size(), *, key: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""A draw (reparameterized where the distribution is) and its log-density."""

        x = self.rsample(sample_shape, key=key) if self.has_rsample else self.sample(sample_shape, key=key)
        return x, self.log_prob(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"


def check_sample(x: Tensor, d: Distribution, dtype: torch.dtype | None, what: str = "x",
                 event: Sequence[int] | None = None) -> None:
    r"""Checks a value given to ``d.log_prob``: a tensor, ``d``'s event shape (or ``event``)
    on the right, leading dimensions that broadcast with ``d``'s batch shape, and ``dtype``
    (shapes and dtypes only, so it costs nothing under ``vmap``/``compile``). A floating
    value wider than ``dtype`` (float64 data, float32 parameters) passes: element-wise math
    promotes it as torch's does (Zuko's GMM takes it); a layer it meets checks its own input."""

    event = d.event_shape if event is None else event
    check_event(x, event, what)
    if dtype is not None and not promotes_over(x, dtype):
        check_dtype(what, x, dtype)
    batch, expected = x.shape[: x.dim() - len(event)], d.batch_shape
    if not broadcasts(batch, expected):
        raise ShapeError(
            f"{what} has batch shape {tuple(batch)} (shape {tuple(x.shape)}, event shape {tuple(event)}), "
            f"which does not broadcast with the distribution's batch shape {tuple(expected)}"
        )


class IndependentBase(FunctionalDistribution, Independent):
    r"""A :class:`torch.distributions.Independent` over an element-wise distribution with
    two parameters, the ``reinterpreted_batch_ndims`` rightmost dimensions forming the
    event (``DiagNormal``, ``BoxUniform``).

    The two parameters (named in ``_params``) are the pytree leaves; ``base_dist`` is a
    property building the element-wise torch distribution (``_base_class``) from them,
    without validation, so torch's attributes (``base_dist``, ``mean``, ``support``,
    the ``Independent`` KL rules) work on vmapped and unflattened instances alike.
    """

    _params: tuple[str, str]
    _base_class: type[Distribution]
    reinterpreted_batch_ndims: int

    @property
    def base_dist(self) -> Distribution:  # type: ignore[override]
        a, b = (getattr(self, name) for name in self._params)
        return self._base_class(a, b, validate_args=False)

    @property
    def _shape(self) -> Size:
        a, b = (getattr(self, name) for name in self._params)
        return a.shape if a.shape == b.shape else torch.broadcast_shapes(a.shape, b.shape)

    @property
    def batch_shape(self) -> Size:
        shape = self._shape
        return shape[: len(shape) - self.reinterpreted_batch_ndims]

    @property
    def event_shape(self) -> Size:
        shape = self._shape
        return shape[len(shape) - self.reinterpreted_batch_ndims :]

    def _sum_event(self, x: Tensor) -> Tensor:
        n = self.reinterpreted_batch_ndims
        return x.sum(dim=tuple(range(-n, 0))) if n else x

    def expand(self, batch_shape: Size, _instance: object = None) -> IndependentBase:
        shape = Size(batch_shape) + self.event_shape
        a, b = (getattr(self, name).expand(shape) for name in self._params)
        return type(self)(a, b, self.reinterpreted_batch_ndims)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_dist!r}, {self.reinterpreted_batch_ndims})"
