r"""Zuko-compatible network modules whose forward is the pure network's ``apply``."""

from __future__ import annotations

__all__ = ["MLP", "MaskedMLP"]

from typing import Any

from torch import Tensor

from .. import nn as _nn
from .module import SpecModule


class MLP(SpecModule):
    r"""Module of :class:`lazydist_functional.nn.MLP` (same arguments as ``zuko.nn.MLP``).

    Example:
        >>> net = MLP(3, 2, [16])
        >>> net(torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(_nn.MLP(*args, **kwargs))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        params, _ = self.trees()
        return self.spec.apply(params, x)


class MaskedMLP(SpecModule):
    r"""Module of :class:`lazydist_functional.nn.MaskedMLP` (masks are buffers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(_nn.MaskedMLP(*args, **kwargs))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        params, state = self.trees()
        return self.spec.apply(params, x, state=state)


class MonotonicMLP(SpecModule):
    r"""Module of :class:`lazydist_functional.nn.MonotonicMLP` (same arguments and parameter
    names as ``zuko.nn.MonotonicMLP``, plus ``stack``).

    Example:
        >>> net = MonotonicMLP(3, 4, [16, 32])
        >>> net(torch.randn(5, 3)).shape
        torch.Size([5, 4])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(_nn.MonotonicMLP(*args, **kwargs))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        params, _ = self.trees()
        return self.spec.apply(params, x)


__all__ += ["MonotonicMLP"]
