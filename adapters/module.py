r"""The bridge: a spec plus a parameter tree becomes an ``nn.Module`` lazy distribution.

A :class:`SpecModule` registers the parameter tree as ``nn.Parameter``\ s and the
state tree as buffers, in nested submodules named after the tree's keys, so
``named_parameters()`` names are the tree's dotted paths. Its ``forward(c)`` gathers
the *current* tensors (those :func:`torch.func.functional_call` substituted, if
any) and calls the pure ``spec.apply``. The returned distribution holds those
tensors: evaluating it after ``functional_call`` returned still uses them.
"""

from __future__ import annotations

__all__ = ["NoSpecError", "ParameterNode", "SpecModule", "module_class", "module_trees", "spec_of", "to_module"]

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ..pytree import unflatten_names
from ..spec import Parametric, Spec


class NoSpecError(TypeError):
    r"""Raised when a module outside this library (no pure spec) is asked for its spec."""


_STRUCTURE_VERSION = [0]


def _bump(*args: Any) -> None:
    _STRUCTURE_VERSION[0] += 1


# Any module of the process (an ``nn.ModuleList`` a user appends to or assigns into
# included) registering a submodule, parameter or buffer bumps the version; the hooks
# change nothing else. Removals are seen by :class:`_Tracked` below.
nn.modules.module.register_module_module_registration_hook(_bump)
nn.modules.module.register_module_parameter_registration_hook(_bump)
nn.modules.module.register_module_buffer_registration_hook(_bump)


class _Tracked(nn.Module):
    r"""Bumps a global version whenever a module's structure changes (a parameter,
    buffer or submodule is added, replaced or removed), so cached parameter
    references are rebuilt. Reassigning *values* (``functional_call``, ``.to()``,
    ``load_state_dict``) keeps the structure and needs no rebuild."""

    def __setattr__(self, name: str, value: Any) -> None:
        _STRUCTURE_VERSION[0] += 1
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        _STRUCTURE_VERSION[0] += 1
        super().__delattr__(name)

    def register_parameter(self, name: str, param: Any) -> None:
        _STRUCTURE_VERSION[0] += 1
        super().register_parameter(name, param)

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        _STRUCTURE_VERSION[0] += 1
        super().register_buffer(name, tensor, persistent)

    def add_module(self, name: str, module: Any) -> None:
        _STRUCTURE_VERSION[0] += 1
        super().add_module(name, module)


class ParameterNode(_Tracked):
    r"""A plain container for one level of a parameter tree. A node holding a ``weight``
    answers ``in_features`` / ``out_features`` like the ``nn.Linear`` it stands for."""

    def __getattr__(self, name: str) -> Any:
        if name in ("in_features", "out_features"):
            weight = self.__dict__["_parameters"].get("weight")
            if weight is not None:
                return weight.shape[-1] if name == "in_features" else weight.shape[-2]
        return super().__getattr__(name)

    def __getitem__(self, index: int | str) -> nn.Module:
        r"""``node[i]``: the child named ``str(i)``, as ``nn.Sequential`` indexing of Zuko's
        networks (``hyper[0]``, ``hyper[-1]``); activations hold no parameters and have no
        node here."""

        if isinstance(index, int) and index < 0:
            numeric = [int(k) for k in self._modules if k.isdigit()]
            index += max(numeric, default=-1) + 1
        child = self._modules.get(str(index))
        if child is None:
            raise IndexError(f"{type(self).__name__} has no parameter layer at index {index} "
                             f"(layers: {list(self._modules)})")
        return child

    def extra_repr(self) -> str:
        tensors = {**self._parameters, **self._buffers}
        return ", ".join(f"{k}: {tuple(v.shape)}" for k, v in tensors.items() if v is not None)

    def forward(self, *args: Any) -> Any:  # pragma: no cover - containers are not called
        raise RuntimeError("ParameterNode is a container of parameters and cannot be called")


def _register(module: nn.Module, params: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    for key in dict.fromkeys([*params, *state]):
        p, s = params.get(key), state.get(key)
        if isinstance(p, Mapping) or isinstance(s, Mapping):
            child = module._modules.get(key)
            if child is None:
                child = ParameterNode()
                module.add_module(key, child)
            _register(child, p or {}, s or {})
        else:
            if p is not None:
                module.register_parameter(key, nn.Parameter(torch.as_tensor(p).detach().clone()))
            if s is not None:
                module.register_buffer(key, torch.as_tensor(s).detach().clone())


def _tree_roots(spec: Spec) -> set[str]:
    r"""The top-level keys of a spec's parameter and state trees (the module's own names)."""

    return {name.split(".")[0] for name in (*spec.param_shapes, *spec.state_shapes)}


def module_trees(module: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    r"""The module's current ``(params, state)`` trees (parameters, buffers) by dotted names."""

    params = unflatten_names(dict(module.named_parameters()))
    state = unflatten_names(dict(module.named_buffers()))
    return params, state


def _read(layout: dict[str, Any]) -> dict[str, Any]:
    r"""The tree of current tensors of a slot layout (see :class:`_Slots`)."""

    return {k: v[0][v[1]] if isinstance(v, tuple) else _read(v) for k, v in layout.items()}


class _Slots:
    r"""Where each tensor of a module tree lives: ``(owner dict, key)`` per dotted name,
    so the current tensors (those :func:`torch.func.functional_call` substituted, or
    ``.to()`` replaced) are read in one pass without walking the module tree."""

    def __init__(self, module: nn.Module, kind: str) -> None:
        slots: dict[str, tuple[dict, str]] = {}
        seen: set[int] = set()
        for prefix, sub in module.named_modules(remove_duplicate=False):
            store = sub._parameters if kind == "params" else sub._buffers
            for key, value in store.items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                slots[f"{prefix}.{key}" if prefix else key] = (store, key)
        self.slots = tuple(slots.values())
        # The nested layout, resolved once: {key: (owner dict, key) or a sub-layout}.
        self.layout = unflatten_names(slots)

    def tree(self) -> dict[str, Any]:
        return _read(self.layout)

    def shapes(self) -> tuple[torch.Size, ...]:
        return tuple(d[k].shape for d, k in self.slots)


class SpecModule(_Tracked):
    r"""An ``nn.Module`` whose forward is ``spec.apply(own params, c, state=own buffers)``.

    Arguments:
        spec: a spec (see :class:`~lazydist_functional.Spec`).
        params: the parameter tree (default: ``spec.init(generator)``).
        state: the state tree (default: ``spec.init_state()``).
        generator: the random generator used when ``params`` is omitted.

    Example:
        >>> from lazydist_functional.flows import MAF
        >>> spec = MAF(3, 2)
        >>> module = SpecModule(spec, spec.init())
        >>> module(torch.randn(2)).log_prob(torch.randn(3)).shape
        torch.Size([])
    """

    def __init__(
        self,
        spec: Spec | None = None,
        params: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if spec is not None:
            params, state = spec.init_trees(params, state, generator)
            self.__dict__["_spec"] = spec
            _register(self, params, state)

    def __getattr__(self, name: str) -> Any:
        r"""Parameters, buffers and submodules first (``nn.Module``); then the public
        configuration of the spec (``passes``, ``shapes``, ``univariate``, ...), which
        Zuko's modules hold as attributes."""

        try:
            return super().__getattr__(name)
        except AttributeError:
            spec = self.__dict__.get("_spec")
            if spec is None or name.startswith("_") or name in _tree_roots(spec):
                raise
            value = getattr(spec, name, None)
            # Tensors and sub-specs are the module's own buffers and children, never forwarded.
            if value is None or isinstance(value, (Tensor, Parametric)):
                raise
            return value

    @property
    def spec(self) -> Spec:
        r"""The pure spec this module applies."""

        spec = self.__dict__.get("_spec")
        if spec is None:
            raise NoSpecError(f"{type(self).__name__} was not built from a spec")
        return spec

    def trees(self) -> tuple[dict[str, Any], dict[str, Any]]:
        r"""The current ``(params, state)`` trees: the tensors now held by the module,
        including those substituted by :func:`torch.func.functional_call`.

        Where the tensors live is cached until any module's structure changes; values are
        read fresh on every call. While ``torch.compile`` traces, nothing is cached (a
        cache written during tracing would hold traced objects).
        """

        if torch.compiler.is_compiling():
            return module_trees(self)
        params, state = self._slots()
        return params.tree(), state.tree()

    def _slots(self) -> tuple[_Slots, _Slots]:
        cache = self.__dict__.get("_slots_cache")
        if cache is None or cache[0] != _STRUCTURE_VERSION[0]:
            cache = (_STRUCTURE_VERSION[0], _Slots(self, "params"), _Slots(self, "state"))
            self.__dict__["_slots_cache"] = cache
        return cache[1], cache[2]

    def _validated_trees(self, spec: Spec) -> tuple[dict[str, Any], dict[str, Any]]:
        r"""Current trees, checked against ``spec`` once per (structure, shapes)."""

        params, state = self.trees()
        if torch.compiler.is_compiling():
            spec.check(params, state)
            return params, state
        p_slots, s_slots = self._slots()
        signature = (id(spec), _STRUCTURE_VERSION[0], p_slots.shapes(), s_slots.shapes())
        if self.__dict__.get("_validated") != signature:
            spec.check(params, state)
            self.__dict__["_validated"] = signature
        return params, state

    def forward(self, c: Tensor | None = None) -> Any:
        r"""Returns :math:`p(X | c)` (or the transform :math:`f(\cdot | c)`)."""

        spec = self.spec
        params, state = self._validated_trees(spec)
        if self.training and isinstance(spec, Spec):  # batch-norm layers: batch statistics, buffers updated
            return spec.apply_checked(params, c, state, update_buffers=True)
        return spec.apply_checked(params, c, state)

    @classmethod
    def from_spec(
        cls,
        spec: Spec,
        params: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> SpecModule:
        r"""An instance of this class holding ``spec`` and its trees, without calling the
        class's own (Zuko-signature) constructor."""

        module = object.__new__(cls)
        SpecModule.__init__(module, spec, params, state, generator)
        return module


def spec_of(module: nn.Module) -> Spec | None:
    r"""The spec a module applies, or ``None`` for modules outside this library."""

    try:
        return module.spec if isinstance(module, SpecModule) else None
    except NoSpecError:
        return None


_MODULES: dict[type, type] = {}


def module_class(spec_cls: type) -> Callable[[type], type]:
    r"""Class decorator: modules of this class represent specs of ``spec_cls`` (and of
    its subclasses, unless a subclass has its own)."""

    def register(cls: type) -> type:
        _MODULES[spec_cls] = cls
        return cls

    return register


def to_module(
    spec: Spec,
    params: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    r"""The adapter module of a spec, holding ``params``/``state`` (default: fresh init).

    The module class is the one registered for the spec's class (nearest in its MRO):
    ``to_module(flows.MAF(3))`` is a ``zuko.flows.MAF`` whose ``.spec`` is that very
    spec; composite specs become composite modules whose children are modules too, so
    names and structure match Zuko's.

    Example:
        >>> from lazydist_functional import flows
        >>> spec = flows.NSF(2, 1)
        >>> module = to_module(spec, spec.init())
        >>> type(module).__name__, module.spec is spec, sorted(module.state_dict())[0]
        ('NSF', True, 'base.loc')
    """

    for cls in type(spec).__mro__:
        if cls in _MODULES:
            return _MODULES[cls].from_spec(spec, params, state, generator)
    raise TypeError(f"no adapter module is registered for specs of type {type(spec).__name__}")
