r"""Core specs: flows, composed lazy transforms, unconditional distributions/transforms."""

from __future__ import annotations

__all__ = [
    "Flow",
    "LazyComposedTransform",
    "LazyInverse",
    "UnconditionalDistribution",
    "UnconditionalTransform",
]

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..distributions import NormalizingFlow
from ..spec import Spec, cast_tree
from ..transforms import ComposedTransform


class LazyComposedTransform(Spec):
    r"""Composition of lazy transform specs :math:`f(x | c) = f_n(\cdot | c) \circ \dots \circ f_0(x | c)`.

    Parameters live under ``"transforms.<i>"`` (the names of Zuko's module).
    """

    def __init__(self, *transforms: Spec) -> None:
        if not transforms:
            raise ValueError("LazyComposedTransform needs at least one transform")
        self.transforms = tuple(transforms)
        self.context = max(t.context for t in self.transforms)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"transforms": {str(i): t.init(generator, dtype=dtype, device=device)
                               for i, t in enumerate(self.transforms)}}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {"transforms": {str(i): t.init_state(dtype=dtype, device=device)
                               for i, t in enumerate(self.transforms)}}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        p, s = params.get("transforms", {}), state.get("transforms", {})
        return ComposedTransform(*(
            t._apply(p.get(str(i), {}), c if t.context else None, s.get(str(i), {})) for i, t in enumerate(self.transforms)
        ))


class LazyInverse(Spec):
    r"""The inverse :math:`f^{-1}(\cdot | c)` of a lazy transform spec (params under ``"transform"``)."""

    def __init__(self, transform: Spec) -> None:
        self.transform = transform
        self.context = transform.context

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"transform": self.transform.init(generator, dtype=dtype, device=device)}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {"transform": self.transform.init_state(dtype=dtype, device=device)}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        return self.transform._apply(params.get("transform", {}), c, state.get("transform", {})).inv


class _Constructor(Spec):
    r"""``f(*args, **kwargs)`` with the tensor arguments held as parameters or state.

    Positional tensors are named ``"_<i>"``, keyword tensors by their keyword (Zuko's
    naming); non-tensor arguments are static configuration.
    """

    def __init__(self, f: Callable[..., Any], *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        self.f = f
        self.buffer = bool(buffer)
        self.arg_names = tuple(f"_{i}" for i in range(len(args)))
        self.kwarg_names = tuple(kwargs)
        values = dict(zip(self.arg_names, args, strict=True)) | dict(kwargs)
        self.tensors = {k: v.detach().clone() for k, v in values.items() if isinstance(v, Tensor)}
        self.static = {k: v for k, v in values.items() if not isinstance(v, Tensor)}

    def _tensors(self, dtype, device) -> dict[str, Tensor]:
        if str(device) == "meta":
            return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in self.tensors.items()}
        return cast_tree({k: v.clone() for k, v in self.tensors.items()}, dtype, device)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {} if self.buffer else self._tensors(dtype, device)

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return self._tensors(dtype, device) if self.buffer else {}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Any:
        values = {**self.static, **(state if self.buffer else params)}
        args = [values[k] for k in self.arg_names]
        kwargs = {k: values[k] for k in self.kwarg_names}
        return self.f(*args, **kwargs)


class UnconditionalDistribution(_Constructor):
    r"""An unconditional lazy distribution ``f(*args, **kwargs)``; the context is ignored.

    Arguments:
        f: a distribution constructor, e.g. :class:`~lazydist_functional.distributions.DiagNormal`.
        args, kwargs: its arguments; tensors become parameters (or state if ``buffer``).
        buffer: hold the tensors as non-trainable state.

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> base = UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2), buffer=True)
        >>> base.apply(base.init()).event_shape
        torch.Size([2])
    """

    def apply(self, params, c=None, *, state=None):  # noqa: D102 - the context is ignored
        return super().apply(params, None, state=state)


class UnconditionalTransform(UnconditionalDistribution):
    r"""An unconditional lazy transform ``f(*args, **kwargs)``; the context is ignored."""


class Flow(Spec):
    r"""A lazy normalizing flow :math:`p(X | c)` from lazy transform(s) and a base.

    ``apply(params, c)`` returns a :class:`~lazydist_functional.distributions.NormalizingFlow`
    whose base is expanded to the context's batch shape. Parameters live under
    ``"transform"`` and ``"base"`` (Zuko's names).

    Arguments:
        transform: a lazy transform spec, or a sequence of them (composed).
        base: a lazy distribution spec.
    """

    def __init__(self, transform: Spec | Sequence[Spec], base: Spec) -> None:
        if not isinstance(transform, Spec):
            transform = LazyComposedTransform(*transform)
        self.transform = transform
        self.base = base
        self.context = max(transform.context, base.context)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {
            "transform": self.transform.init(generator, dtype=dtype, device=device),
            "base": self.base.init(generator, dtype=dtype, device=device),
        }

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {
            "transform": self.transform.init_state(dtype=dtype, device=device),
            "base": self.base.init_state(dtype=dtype, device=device),
        }

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> NormalizingFlow:
        transform = self.transform._apply(params.get("transform", {}), c, state.get("transform", {}))
        base = self.base._apply(params.get("base", {}), c if self.base.context else None, state.get("base", {}))
        if c is not None:
            base = base.expand(c.shape[:-1])
        return NormalizingFlow(transform, base)
