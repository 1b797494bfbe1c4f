r"""Captured children: a module that is not as its spec built it, run on the tensors of one call.

When a child of an adapter module is a user's module, or one of ours that was edited
(parametrized, pruned, hooked, its layers replaced), the pure core cannot compute it from
a tree. At call time its parameters and buffers are *captured* (read once, as
:func:`torch.func.functional_call` would substitute them) and the child stands in the
spec as a network (:class:`CapturedNetwork`, ``x -> y``) or a univariate factory
(:class:`CapturedUnivariate`, ``*phi -> Transform``) that runs the module's own forward
through ``functional_call`` on those tensors. The distribution built from it holds the
captured tensors, as it would hold the pure path's: evaluating it after
``functional_call`` has returned uses them, never what the module holds later.
"""

from __future__ import annotations

__all__ = ["CapturedNetwork", "CapturedUnivariate", "flat_tensors"]

from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from torch import Tensor
from torch.distributions import Transform
from torch.func import functional_call

from ..nn import Network
from ..pytree import unflatten_names
from ..spec import Parametric


def flat_tensors(module: nn.Module, buffers: bool) -> dict[str, Tensor]:
    r"""``{dotted name: tensor}`` of a module's parameters (or buffers), tied ones under
    each name, as :func:`torch.func.functional_call` takes them."""

    named = module.named_buffers if buffers else module.named_parameters
    return dict(named(remove_duplicate=False))


class _Captured:
    r"""What both stand-ins share: the module and the capture of its tensors."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    @property
    def name(self) -> str:
        return f"captured {type(self.module).__name__}"

    def capture(self) -> tuple[dict[str, Any], dict[str, Any]]:
        r"""The ``(params, state)`` the module holds now, as flat ``{dotted name: tensor}`` dicts."""

        return flat_tensors(self.module, buffers=False), flat_tensors(self.module, buffers=True)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return unflatten_names({k: v.detach() for k, v in flat_tensors(self.module, buffers=False).items()})

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return unflatten_names({k: v.detach() for k, v in flat_tensors(self.module, buffers=True).items()})

    def call(self, params: Mapping[str, Any], state: Mapping[str, Any], *args: Any) -> Any:
        return functional_call(self.module, {**params, **state}, args)


class CapturedNetwork(_Captured, Network):
    r"""A network ``y = module(x)`` evaluated on captured tensors.

    Example:
        >>> import torch
        >>> net = CapturedNetwork(nn.Linear(2, 3))
        >>> params, state = net.capture()
        >>> net._apply(params, torch.zeros(2), state).shape
        torch.Size([3])
    """

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        return self.call(params, state, x)


class CapturedUnivariate(_Captured, Parametric):
    r"""A univariate factory ``*phi -> module(*phi)`` (a transform) evaluated on captured
    tensors. Its buffers are captured with its parameters: the core passes a univariate
    only its parameter tree."""

    def capture(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {**flat_tensors(self.module, buffers=False), **flat_tensors(self.module, buffers=True)}, {}

    def transform(self, params: Mapping[str, Any], *phi: Tensor) -> Transform:
        return self.call(params, {}, *phi)
