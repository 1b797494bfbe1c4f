r"""Zuko-compatible lazy modules: a ``forward(c)`` that returns ``p(X | c)`` or ``f(· | c)``.

Same names and constructor signatures as ``zuko.lazy``. Modules built here compute
their forward with the pure spec (:class:`~lazydist_functional.adapters.module.SpecModule`);
composites (:class:`Flow`, :class:`LazyComposedTransform`, :class:`LazyInverse`) do so
whenever all their children are spec modules, and fall back to calling the children
(a user's own lazy modules) otherwise.
"""

from __future__ import annotations

__all__ = [
    "Flow",
    "LazyComposedTransform",
    "LazyDistribution",
    "LazyInverse",
    "LazyTransform",
    "Unconditional",
    "UnconditionalDistribution",
    "UnconditionalTransform",
]

import abc
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn
from torch import Tensor
from torch.distributions import Distribution, Transform

from ..distributions import NormalizingFlow
from ..flows import core as _core
from ..spec import Spec
from ..transforms import ComposedTransform
from .module import _STRUCTURE_VERSION, NoSpecError, SpecModule


class LazyDistribution(SpecModule, abc.ABC):
    r"""Abstract lazy distribution: a module whose ``forward(c)`` returns :math:`p(X | c)`."""

    @abc.abstractmethod
    def forward(self, c: Tensor | None = None) -> Distribution:
        ...


class LazyTransform(SpecModule, abc.ABC):
    r"""Abstract lazy transform: a module whose ``forward(c)`` returns :math:`f(\cdot | c)`."""

    @abc.abstractmethod
    def forward(self, c: Tensor | None = None) -> Transform:
        ...

    @property
    def inv(self) -> LazyTransform:
        r"""The lazy inverse :math:`f^{-1}(\cdot | c)`."""

        return LazyInverse(self)


def spec_of(module: nn.Module) -> Spec | None:
    r"""The spec a module applies, or ``None`` for modules outside this library."""

    try:
        return module.spec if isinstance(module, SpecModule) else None
    except NoSpecError:
        return None


class _Composite:
    r"""Mixin: the spec is built from the children's specs; ``None`` if a child is not a
    spec module (then ``forward`` calls the children). Cached until the module
    structure changes."""

    def _composite_spec(self) -> Spec | None:
        cached = self.__dict__.get("_spec_cache")
        if cached is None or cached[0] != _STRUCTURE_VERSION[0]:
            specs = tuple(spec_of(m) for m in self._spec_children())
            spec = None if any(s is None for s in specs) else self._build_spec(specs)
            if spec is not None:
                spec._name = type(self).__name__  # errors name the module class, e.g. MAF
            cached = (_STRUCTURE_VERSION[0], spec)
            self.__dict__["_spec_cache"] = cached
        return cached[1]

    @property
    def spec(self) -> Spec:
        spec = self._composite_spec()
        if spec is None:
            raise NoSpecError(f"{type(self).__name__} has children that are not spec modules")
        return spec


class LazyComposedTransform(_Composite, LazyTransform):
    r"""Lazy composition :math:`f_n \circ \dots \circ f_0` of lazy transforms."""

    def __init__(self, *transforms: nn.Module) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def _spec_children(self) -> Sequence[nn.Module]:
        return list(self.transforms)

    def _build_spec(self, specs: tuple[Spec, ...]) -> Spec:
        return _core.LazyComposedTransform(*specs)

    def forward(self, c: Tensor | None = None) -> Transform:
        if self._composite_spec() is not None:
            return SpecModule.forward(self, c)
        return ComposedTransform(*(t(c) for t in self.transforms))


class LazyInverse(_Composite, LazyTransform):
    r"""Lazy inverse :math:`f^{-1}(\cdot | c)` of a lazy transform."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def _spec_children(self) -> Sequence[nn.Module]:
        return [self.transform]

    def _build_spec(self, specs: tuple[Spec, ...]) -> Spec:
        return _core.LazyInverse(specs[0])

    def forward(self, c: Tensor | None = None) -> Transform:
        if self._composite_spec() is not None:
            return SpecModule.forward(self, c)
        return self.transform(c).inv

    @property
    def inv(self) -> nn.Module:
        return self.transform


class Flow(_Composite, LazyDistribution):
    r"""Lazy normalizing flow from lazy transform(s) and a lazy base distribution.

    Arguments:
        transform: a lazy transform or a sequence of them.
        base: a lazy distribution.
    """

    def __init__(self, transform: nn.Module | Sequence[nn.Module], base: nn.Module) -> None:
        super().__init__()
        if not isinstance(transform, nn.Module):
            transform = LazyComposedTransform(*transform)
        self.transform = transform
        self.base = base

    def _spec_children(self) -> Sequence[nn.Module]:
        return [self.transform, self.base]

    def _build_spec(self, specs: tuple[Spec, ...]) -> Spec:
        return _core.Flow(*specs)

    def forward(self, c: Tensor | None = None) -> NormalizingFlow:
        if self._composite_spec() is not None:
            return SpecModule.forward(self, c)
        transform = self.transform(c)
        base = self.base(c)
        if c is not None:
            base = base.expand(c.shape[:-1])
        return NormalizingFlow(transform, base)


class UnconditionalDistribution(LazyDistribution):
    r"""Unconditional lazy distribution ``f(*args, **kwargs)``; tensors become parameters
    (or buffers with ``buffer=True``), named ``_<i>`` / by keyword as in Zuko.

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> base = UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2), buffer=True)
        >>> base().sample().shape
        torch.Size([2])
    """

    _core_cls: type = _core.UnconditionalDistribution

    def __init__(self, f: Callable[..., Any], *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        super().__init__(self._core_cls(f, *args, buffer=buffer, **kwargs))

    def forward(self, c: Tensor | None = None) -> Distribution:
        return SpecModule.forward(self, None)


class UnconditionalTransform(LazyTransform):
    r"""Unconditional lazy transform ``f(*args, **kwargs)`` (see :class:`UnconditionalDistribution`)."""

    def __init__(self, f: Callable[..., Any], *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        super().__init__(_core.UnconditionalTransform(f, *args, buffer=buffer, **kwargs))

    def forward(self, c: Tensor | None = None) -> Transform:
        return SpecModule.forward(self, None)


class Unconditional(UnconditionalTransform):
    r"""Deprecated in Zuko: use :class:`UnconditionalDistribution` or :class:`UnconditionalTransform`."""

    def __init__(self, meta: Callable[..., Any], *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        import warnings

        warnings.warn("'Unconditional' is deprecated; use 'UnconditionalDistribution' or 'UnconditionalTransform'",
                      DeprecationWarning, stacklevel=2)
        super().__init__(meta, *args, buffer=buffer, **kwargs)
