r"""Base class of this library's distributions: pytree, shapes derived from leaves."""

from __future__ import annotations

__all__ = ["FunctionalDistribution", "IndependentBase"]

import torch
from torch import Size, Tensor
from torch.distributions import Distribution


class FunctionalDistribution(Distribution):
    r"""A :class:`torch.distributions.Distribution` that is also a pytree.

    Batch and event shapes are *properties computed from the leaves*, never stored,
    because a distribution returned by :func:`torch.func.vmap` is unflattened with
    leaves that gained a batch dimension. Argument validation is off (it branches
    on values, which breaks ``vmap``); checks here are on shapes only.
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

    def sample(self, sample_shape: Size = Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"


class IndependentBase(FunctionalDistribution):
    r"""Base of distributions with two element-wise parameters whose ``ndims`` rightmost
    dimensions form the event (``DiagNormal``, ``BoxUniform``). Subclasses name the two
    parameters in ``_params``."""

    _params: tuple[str, str]
    ndims: int

    @property
    def _shape(self) -> Size:
        a, b = (getattr(self, name) for name in self._params)
        return a.shape if a.shape == b.shape else torch.broadcast_shapes(a.shape, b.shape)

    @property
    def batch_shape(self) -> Size:
        shape = self._shape
        return shape[: len(shape) - self.ndims]

    @property
    def event_shape(self) -> Size:
        shape = self._shape
        return shape[len(shape) - self.ndims :]

    def _sum_event(self, x: Tensor) -> Tensor:
        return x.sum(dim=tuple(range(-self.ndims, 0))) if self.ndims else x

    def expand(self, batch_shape: Size, _instance: object = None) -> IndependentBase:
        shape = Size(batch_shape) + self.event_shape
        a, b = (getattr(self, name).expand(shape) for name in self._params)
        return type(self)(a, b, self.ndims)
