r"""Zuko-compatible lazy modules: a ``forward(c)`` that returns ``p(X | c)`` or ``f(· | c)``.

Same names, constructor signatures and attributes as ``zuko.lazy``. A module built
from a spec keeps it (``module.spec``) and its forward is that spec's ``apply`` on
the tensors it holds when called. Composites (:class:`Flow`, :class:`LazyComposedTransform`,
:class:`LazyInverse`) call their children, as Zuko's do, so any lazy module a user puts
there works; their ``spec`` is built from the children's specs.
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
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.distributions import Distribution, Transform

from ..distributions import NormalizingFlow
from ..flows import core
from ..spec import Spec
from ..transforms import ComposedTransform
from ..checks import ContextError, check_context
from .module import (NoSpecError, SpecModule, _freeze, expand_to, module_class, runs_as_zuko, spec_of, to_module,
                     zero_width_context)
from .utils import Partial

# The imports above that this file does not use are names of Zuko's module namespace.


class LazyDistribution(SpecModule, abc.ABC):
    r"""Abstract lazy distribution: a module whose ``forward(c)`` returns :math:`p(X | c)`.

    Subclass it and define ``forward``, as with Zuko; modules of this library built
    from a spec (:class:`SpecDistribution`) define it as ``spec.apply``.
    """

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


class SpecDistribution(LazyDistribution):
    r"""A lazy distribution built from a core spec: ``forward(c) = spec.apply(own params, c)``.

    Example:
        >>> from lazydist_functional.flows import GMM
        >>> SpecDistribution(GMM(2, components=3))().log_prob(torch.zeros(2)).shape
        torch.Size([])
    """

    def forward(self, c: Tensor | None = None) -> Distribution:
        return SpecModule.forward(self, c)


@module_class(Spec)
class SpecTransform(LazyTransform):
    r"""A lazy transform built from a core spec: ``forward(c) = spec.apply(own params, c)``.

    Example:
        >>> from lazydist_functional.flows import MaskedAutoregressiveTransform
        >>> t = SpecTransform(MaskedAutoregressiveTransform(3, 2))
        >>> t(torch.randn(2))(torch.randn(3)).shape
        torch.Size([3])
    """

    def forward(self, c: Tensor | None = None) -> Transform:
        return SpecModule.forward(self, c)


def _same(a: Any, b: Any) -> bool:
    r"""Whether two parts are the same spec objects (identity, element-wise for tuples)."""

    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b))
    return a is b


def _leaf_spec(module: nn.Module) -> Spec | None:
    r"""The spec a module of this library was built from, or ``None`` (a user's module)."""

    if not isinstance(module, SpecModule) or runs_as_zuko(module):
        return None
    return module.__dict__.get("_spec")


def _context_of(module: nn.Module) -> int | None:
    r"""The number of context features a module tree reads, or ``None`` if a module of
    the tree is not this library's (it may read any context)."""

    if isinstance(module, (_CompositeModule, nn.ModuleList)):
        contexts = [_context_of(child) for child in module.children()]
        return None if any(n is None for n in contexts) else max(contexts, default=0)
    spec = _leaf_spec(module)
    return None if spec is None else spec.context


def _reads_context(module: nn.Module) -> bool:
    r"""Whether some module of the tree may read a context (stops at the first that does)."""

    if isinstance(module, (_CompositeModule, nn.ModuleList)):
        return any(_reads_context(child) for child in module._modules.values())
    spec = _leaf_spec(module)
    return spec is None or spec.context > 0


def _ignores_context(module: nn.Module) -> bool:
    r"""Whether every leaf of the tree is an ``Unconditional*`` module, which Zuko calls with the
    context and which ignore it (any other leaf built unconditional fails on one in Zuko)."""

    if isinstance(module, (_CompositeModule, nn.ModuleList)):
        return all(_ignores_context(child) for child in module._modules.values())
    return isinstance(module, _UnconditionalModule)


def _unconditional(module: nn.Module) -> bool:
    r"""Whether a child is a leaf of this library built unconditional (it is given no context,
    as the core's composites give none to such parts)."""

    if isinstance(module, _CompositeModule):
        return False
    spec = _leaf_spec(module)
    return spec is not None and spec.context == 0


class _CompositeModule(SpecModule):
    r"""Base of composite modules (``Flow``, ``LazyComposedTransform``, ``LazyInverse``):
    the forward calls the children, as Zuko's does. ``_composite`` is the core composite
    class whose ``part_names`` are this module's child attributes."""

    _composite: type[core.Composite]

    @classmethod
    def from_spec(cls, spec: core.Composite, params: Mapping[str, Any] | None = None,
                  state: Mapping[str, Any] | None = None, generator: torch.Generator | None = None) -> SpecModule:
        module = object.__new__(cls)
        module._build(spec, params, state, generator)
        return module

    def _build(self, spec: core.Composite, params: Mapping[str, Any] | None = None,
               state: Mapping[str, Any] | None = None, generator: torch.Generator | None = None) -> None:
        r"""Initializes this module from ``spec``: one child module per part, holding its subtrees."""

        params, state = spec.init_trees(params, state, generator)
        SpecModule.__init__(self)
        for name, part in spec.parts().items():
            if isinstance(part, tuple):
                child: nn.Module = nn.ModuleList(
                    to_module(p, core.subtree(params, name, str(i)), core.subtree(state, name, str(i)))
                    for i, p in enumerate(part)
                )
            else:
                child = to_module(part, core.subtree(params, name), core.subtree(state, name))
            setattr(self, name, child)
        self.__dict__["_spec"] = spec

    def _adopt_children(self) -> None:
        r"""After the Zuko-signature constructor set the children: the spec is built from them."""

        spec = self._rebuilt_spec()
        if spec is not None:
            self.__dict__["_spec"] = spec

    def _rebuilt_spec(self) -> Spec | None:
        parts: dict[str, Any] = {}
        for name in self._composite.part_names:
            child = getattr(self, name)
            specs = tuple(spec_of(m) for m in child) if isinstance(child, nn.ModuleList) else (spec_of(child),)
            if any(s is None for s in specs):
                return None
            parts[name] = specs if isinstance(child, nn.ModuleList) else specs[0]
        original = self.__dict__.get("_spec")
        if original is not None and all(_same(parts[k], v) for k, v in original.parts().items()):
            return original
        return self._composite.from_parts(**parts)

    @property
    def spec(self) -> Spec:
        r"""The pure spec of the current children (the one this module was built from while
        they are unchanged); :class:`NoSpecError` if a child has none."""

        spec = self._rebuilt_spec()
        if spec is None:
            raise NoSpecError(f"{type(self).__name__} has children that are not spec modules")
        return spec

    def _child_c(self, child: nn.Module, c: Tensor | None) -> Tensor | None:
        return None if c is None or _unconditional(child) else c

    def forward(self, c: Tensor | None = None) -> Any:
        if c is not None and not _reads_context(self) and not _ignores_context(self):
            batch = zero_width_context(c, 0)
            if batch is not None:
                return expand_to(self.forward_children(None), batch)
            check_context(c, 0, type(self).__name__)  # the core's error, named after this module
        try:
            return self.forward_children(c)
        except ContextError:
            context = _context_of(self)
            if c is None and context:
                check_context(c, context, type(self).__name__)
            raise

    def forward_children(self, c: Tensor | None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@module_class(core.LazyComposedTransform)
class LazyComposedTransform(_CompositeModule, LazyTransform):
    r"""Lazy composition :math:`f_n \circ \dots \circ f_0` of lazy transforms.

    Example:
        >>> from lazydist_functional.adapters.flows import MaskedAutoregressiveTransform
        >>> t = LazyComposedTransform(MaskedAutoregressiveTransform(2, 1), MaskedAutoregressiveTransform(2, 1))
        >>> t(torch.randn(1))(torch.randn(2)).shape
        torch.Size([2])
    """

    _composite = core.LazyComposedTransform

    def __init__(self, *transforms: nn.Module) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self._adopt_children()

    def __repr__(self) -> str:
        return repr(self.transforms).replace("ModuleList", "LazyComposedTransform", 1)

    def forward_children(self, c: Tensor | None) -> Transform:
        return ComposedTransform(*(t(self._child_c(t, c)) for t in self._modules["transforms"]))


@module_class(core.LazyInverse)
class LazyInverse(_CompositeModule, LazyTransform):
    r"""Lazy inverse :math:`f^{-1}(\cdot | c)` of a lazy transform."""

    _composite = core.LazyInverse

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self._adopt_children()

    def forward_children(self, c: Tensor | None) -> Transform:
        return self.transform(self._child_c(self.transform, c)).inv

    @property
    def inv(self) -> nn.Module:
        return self.transform


@module_class(core.Flow)
class Flow(_CompositeModule, LazyDistribution):
    r"""Lazy normalizing flow from lazy transform(s) and a lazy base distribution.

    Arguments:
        transform: a lazy transform or a sequence of them.
        base: a lazy distribution.

    Example:
        >>> from lazydist_functional.adapters.flows import MaskedAutoregressiveTransform
        >>> from lazydist_functional.adapters.distributions import DiagNormal
        >>> base = UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2), buffer=True)
        >>> flow = Flow([MaskedAutoregressiveTransform(2, 1)], base)
        >>> flow(torch.randn(5, 1)).log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    _composite = core.Flow

    def __init__(self, transform: nn.Module | Iterable[nn.Module], base: nn.Module) -> None:
        super().__init__()
        # as Zuko: a lazy transform is kept, any other iterable (a list, a generator, another
        # flow's ``transform.transforms`` ModuleList, an ``nn.Sequential``) is composed
        if not isinstance(transform, LazyTransform) and isinstance(transform, Iterable):
            transform = LazyComposedTransform(*transform)
        self.transform = transform
        self.base = base
        self._adopt_children()

    def forward_children(self, c: Tensor | None) -> NormalizingFlow:
        transform, base = self._modules["transform"], self._modules["base"]
        transform = transform(self._child_c(transform, c))
        base = base(self._child_c(base, c))
        if c is not None:
            base = base.expand(c.shape[:-1])
        return NormalizingFlow(transform, base)


class _UnconditionalModule(Partial):
    r"""Zuko's unconditional modules are :class:`~lazydist_functional.adapters.utils.Partial`\ s:
    the same attributes (``f``, ``args``, ``kwargs``) over the pure constructor spec. A
    module ``f`` (Zuko registers it as a submodule) has no pure spec: then this is a
    plain ``Partial``."""

    _core_cls: type[core.UnconditionalDistribution]

    def __init__(self, f: Callable[..., Any], *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        if isinstance(f, nn.Module):
            Partial.__init__(self, f, *args, buffer=buffer, **kwargs)
            return
        SpecModule.__init__(self, self._core_cls(f, *args, buffer=buffer, **kwargs))
        self._mirror_partial()

    @classmethod
    def from_spec(cls, spec: Spec, params: Mapping[str, Any] | None = None,
                  state: Mapping[str, Any] | None = None, generator: torch.Generator | None = None) -> SpecModule:
        module = super().from_spec(spec, params, state, generator)
        module._mirror_partial()
        return module

    def _mirror_partial(self) -> None:
        spec = self._built_spec
        self.__dict__.update(spec.static, f=spec.f, _nargs=len(spec.arg_names), _keys=list(spec.kwarg_names))
        _freeze(self)  # the mirrored attributes are part of the module as built

    def __setattr__(self, name: str, value: Any) -> None:
        r"""A non-tensor argument (``u.bound = 1.0``) or the constructor (``u.f = ...``) set after
        construction is used by the next call, as by Zuko's ``Partial``, which reads them then."""

        spec = self.__dict__.get("_spec")
        if spec is not None and not isinstance(value, (Tensor, nn.Module)) and (name == "f" or name in spec.static):
            change = {"f": value} if name == "f" else {"static": {**spec.static, name: value}}
            self.__dict__["_spec"] = spec.with_configuration(change)
            self._mirror_partial()
            return
        super().__setattr__(name, value)

    def forward(self, c: Tensor | None = None) -> Any:
        if "_spec" in self.__dict__:
            return SpecModule.forward(self, None)
        return Partial.forward(self)

    def extra_repr(self) -> str:
        return repr(self.forward()) if "_spec" in self.__dict__ else Partial.extra_repr(self)


@module_class(core.UnconditionalDistribution)
class UnconditionalDistribution(_UnconditionalModule, LazyDistribution):
    r"""Unconditional lazy distribution ``f(*args, **kwargs)``; tensors become parameters
    (or buffers with ``buffer=True``), named ``_<i>`` / by keyword as in Zuko; the
    context is ignored.

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> base = UnconditionalDistribution(DiagNormal, torch.zeros(2), torch.ones(2), buffer=True)
        >>> base().sample().shape
        torch.Size([2])
    """

    _core_cls = core.UnconditionalDistribution


@module_class(core.UnconditionalTransform)
class UnconditionalTransform(_UnconditionalModule, LazyTransform):
    r"""Unconditional lazy transform ``f(*args, **kwargs)`` (see :class:`UnconditionalDistribution`).

    Any callable returning a transform works, torch's included:

    Example:
        >>> t = UnconditionalTransform(torch.distributions.AffineTransform, torch.tensor(1.0), torch.tensor(2.0))
        >>> t()(torch.zeros(2))
        tensor([1., 1.], grad_fn=<AddBackward0>)
    """

    _core_cls = core.UnconditionalTransform


class Unconditional(UnconditionalTransform):
    r"""Deprecated in Zuko: use :class:`UnconditionalDistribution` or :class:`UnconditionalTransform`."""

    def __init__(self, meta: Callable[..., Any], *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        warnings.warn("'Unconditional' is deprecated; use 'UnconditionalDistribution' or 'UnconditionalTransform'",
                      DeprecationWarning, stacklevel=2)
        super().__init__(meta, *args, buffer=buffer, **kwargs)

    @property
    def meta(self) -> Callable[..., Any]:
        r"""The constructor (Zuko's ``Unconditional`` names :attr:`f` so)."""

        return self.f

    @meta.setter
    def meta(self, value: Callable[..., Any]) -> None:
        self.f = value

    @property
    def kwargs(self) -> dict[str, Any]:
        r"""The keyword arguments bound to the constructor (assignable, as Zuko's attribute)."""

        return Partial.kwargs.fget(self)

    @kwargs.setter
    def kwargs(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            setattr(self, key, value)
