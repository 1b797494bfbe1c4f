r"""Pure layers: stacked linear, layer normalization, residual blocks."""

from __future__ import annotations

__all__ = ["LayerNorm", "Linear", "Residual"]

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..spec import Spec
from .linear import init_linear, linear


class Linear(Spec):
    r"""Linear layer :math:`y = x W^T + b`; with ``stack=S``, :math:`S` independent
    layers applied to inputs of shape :math:`(*, S, C)` (Zuko's ``stack``).

    Example:
        >>> layer = Linear(3, 2, stack=4)
        >>> layer.apply(layer.init(), torch.randn(5, 4, 3)).shape
        torch.Size([5, 4, 2])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, stack: int | None = None) -> None:
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bias = bool(bias)
        self.stack = stack

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        if self.stack is None:
            return init_linear(self.in_features, self.out_features, self.bias, generator, dtype, device)
        layers = [init_linear(self.in_features, self.out_features, self.bias, generator, dtype, device)
                  for _ in range(self.stack)]
        return {k: torch.stack([layer[k] for layer in layers]) for k in layers[0]}

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        return linear(x, params["weight"], params.get("bias"))

    def apply(self, params: Mapping[str, Any], x: Tensor, *, state: Any = None) -> Tensor:  # type: ignore[override]
        self.check(params)
        return self._apply(params, x, {})


class LayerNorm(Spec):
    r""":math:`y = (x - \mathrm{E}[x]) / \sqrt{\mathrm{Var}[x] + \epsilon}` over ``dim`` (no parameters).

    Example:
        >>> y = LayerNorm().apply({}, torch.randn(2, 5))
        >>> torch.allclose(y.mean(-1), torch.zeros(2), atol=1e-6)
        True
    """

    def __init__(self, dim: int | Iterable[int] = -1, eps: float = 1e-5) -> None:
        self.dim = dim if isinstance(dim, int) else tuple(dim)
        self.eps = float(eps)

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        var, mean = torch.var_mean(x, dim=self.dim, unbiased=True, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt()

    def apply(self, params: Mapping[str, Any], x: Tensor, *, state: Any = None) -> Tensor:  # type: ignore[override]
        return self._apply(params, x, {})


class Residual(Spec):
    r"""Residual block :math:`y = x + g_n(\cdots g_1(x))`.

    Layers are specs (parameters under ``"<position>"``) or parameter-free callables
    (activations), in ``nn.Sequential`` positions as in Zuko's ``Residual``.

    Example:
        >>> block = Residual(Linear(4, 4), torch.nn.ReLU(), Linear(4, 4))
        >>> block.apply(block.init(), torch.randn(3, 4)).shape
        torch.Size([3, 4])
    """

    def __init__(self, *layers: Spec | Callable[[Tensor], Tensor]) -> None:
        self.layers = tuple(layers)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {str(i): layer.init(generator, dtype=dtype, device=device)
                for i, layer in enumerate(self.layers) if isinstance(layer, Spec) and layer.param_shapes}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {str(i): layer.init_state(dtype=dtype, device=device)
                for i, layer in enumerate(self.layers) if isinstance(layer, Spec) and layer.state_shapes}

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        y = x
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Spec):
                y = layer._apply(params.get(str(i), {}), y, state.get(str(i), {}))
            else:
                y = layer(y)
        return x + y

    def apply(self, params: Mapping[str, Any], x: Tensor, *, state: Any = None) -> Tensor:  # type: ignore[override]
        self.check(params, state)
        return self._apply(params, x, state if state is not None else self.default_state(None))
