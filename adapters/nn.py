r"""Zuko-compatible network modules whose forward is the pure network's ``apply``."""

from __future__ import annotations

__all__ = ["LayerNorm", "Linear", "MLP", "MaskedMLP", "MonotonicMLP", "Residual"]

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


class Linear(SpecModule):
    r"""Module of :class:`lazydist_functional.nn.Linear` (``zuko.nn.Linear``: ``stack`` supported).

    Example:
        >>> Linear(3, 2, stack=4)(torch.randn(5, 4, 3)).shape
        torch.Size([5, 4, 2])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, stack: int | None = None) -> None:
        super().__init__(_nn.Linear(in_features, out_features, bias, stack))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        params, _ = self.trees()
        return self.spec.apply(params, x)


class LayerNorm(SpecModule):
    r"""Standardizes features along ``dim`` (no parameters), as ``zuko.nn.LayerNorm``."""

    def __init__(self, dim: int = -1, eps: float = 1e-5) -> None:
        super().__init__(_nn.LayerNorm(dim, eps))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.spec.apply({}, x)


class Residual(SpecModule):
    r"""Residual block :math:`x + g(x)` over adapter layers or parameter-free modules.

    Example:
        >>> import torch.nn as nn
        >>> block = Residual(Linear(4, 4), nn.ReLU(), Linear(4, 4))
        >>> block(torch.randn(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, *layers: Any) -> None:
        specs = [layer.spec if isinstance(layer, SpecModule) else layer for layer in layers]
        params = {str(i): layer.trees()[0] for i, layer in enumerate(layers)
                  if isinstance(layer, SpecModule) and layer.spec.param_shapes}
        super().__init__(_nn.Residual(*specs), params)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        params, state = self.trees()
        return self.spec.apply(params, x, state=state)
