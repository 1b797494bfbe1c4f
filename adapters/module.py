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

import torch
import torch.nn as nn
from torch import Tensor

from ..pytree import unflatten_names
from ..spec import Spec


class NoSpecError(TypeError):
    r"""Raised when a module outside this library (no pure spec) is asked for its spec."""


class ParameterNode(nn.Module):
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


class SpecModule(nn.Module):
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
            params = spec.init(generator) if params is None else params
            state = spec.init_state() if state is None else state
            spec.check(params, state)
            _register(self, params, state)

    @property
    def spec(self) -> Spec:
        r"""The pure spec this module applies."""

        spec = self.__dict__.get("_spec")
        if spec is None:
            raise NoSpecError(f"{type(self).__name__} was not built from a spec")
        return spec

    def trees(self) -> tuple[dict[str, Any], dict[str, Any]]:
        r"""The current ``(params, state)`` trees (see :func:`module_trees`)."""

        return module_trees(self)

    def forward(self, c: Tensor | None = None) -> Any:
        r"""Returns :math:`p(X | c)` (or the transform :math:`f(\cdot | c)`)."""

        params, state = self.trees()
        return self.spec.apply(params, c, state=state)
