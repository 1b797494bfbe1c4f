r"""The bridge: a spec plus a parameter tree becomes an ``nn.Module`` lazy distribution.

A :class:`SpecModule` registers the parameter tree as ``nn.Parameter``\ s and the
state tree as buffers, in nested submodules named after the tree's keys, so
``named_parameters()`` names are the tree's dotted paths. Its ``forward(c)`` gathers
the *current* tensors (those :func:`torch.func.functional_call` substituted, if
any) and calls the pure ``spec.apply``. The returned distribution holds those
tensors: evaluating it after ``functional_call`` returned still uses them.
"""

from __future__ import annotations

__all__ = ["NoSpecError", "ParameterNode", "SpecModule", "module_trees"]

from collections.abc import Mapping
from typing import Any

import optree
import torch
import torch.nn as nn
from torch import Tensor

from ..pytree import unflatten_names
from ..spec import Spec


class NoSpecError(TypeError):
    r"""Raised when a module outside this library (no pure spec) is asked for its spec."""


_STRUCTURE_VERSION = [0]


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
    r"""A plain container for one level of a parameter tree."""

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


def module_trees(module: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    r"""The module's current ``(params, state)`` trees (parameters, buffers) by dotted names."""

    params = unflatten_names(dict(module.named_parameters()))
    state = unflatten_names(dict(module.named_buffers()))
    return params, state


def _references(module: nn.Module, kind: str) -> tuple[list[tuple[dict, str]], Any]:
    r"""``(owner dict, key)`` of every parameter (or buffer), and the tree structure."""

    refs: dict[str, tuple[dict, str]] = {}
    seen: set[int] = set()
    for prefix, sub in module.named_modules():
        store = sub._parameters if kind == "params" else sub._buffers
        for key, value in store.items():
            if value is None or id(value) in seen:
                continue
            seen.add(id(value))
            refs[f"{prefix}.{key}" if prefix else key] = (store, key)
    leaves, treespec = optree.tree_flatten(unflatten_names(refs), is_leaf=lambda x: isinstance(x, tuple))
    return leaves, treespec


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
            self._spec = spec
            params, state = spec.init_trees(params, state, generator)
            _register(self, params, state)

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

        References to the parameter dicts are cached and rebuilt when any module's
        structure changes; values are read fresh on every call.
        """

        cache = self.__dict__.get("_refs")
        if cache is None or cache[0] != _STRUCTURE_VERSION[0]:
            cache = (_STRUCTURE_VERSION[0], _references(self, "params"), _references(self, "state"))
            self.__dict__["_refs"] = cache
        (p_refs, p_spec), (s_refs, s_spec) = cache[1], cache[2]
        p_leaves = [d[k] for d, k in p_refs]
        s_leaves = [d[k] for d, k in s_refs]
        params = optree.tree_unflatten(p_spec, p_leaves)
        state = optree.tree_unflatten(s_spec, s_leaves)
        return params, state

    def _validated_trees(self) -> tuple[dict[str, Any], dict[str, Any]]:
        r"""Current trees, validated against the spec once per (structure, shapes)."""

        params, state = self.trees()
        cache = self.__dict__["_refs"]
        signature = (
            cache[0],
            tuple(d[k].shape for d, k in cache[1][0]),
            tuple(d[k].shape for d, k in cache[2][0]),
        )
        validated = self.__dict__.setdefault("_validated", set())
        if signature not in validated:
            self.spec.check(params, state)
            validated.add(signature)
        return params, state

    def forward(self, c: Tensor | None = None) -> Any:
        r"""Returns :math:`p(X | c)` (or the transform :math:`f(\cdot | c)`)."""

        params, state = self._validated_trees()
        return self.spec.apply_checked(params, c, state)
