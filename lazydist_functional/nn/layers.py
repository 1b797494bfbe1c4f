r"""Pure layers: linear (plain, stacked, masked, monotonic), layer normalization, residual blocks."""

from __future__ import annotations

__all__ = ["LayerNorm", "Linear", "MaskedLinear", "MonotonicLinear", "Residual", "layer_norm", "two_way_elu"]

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .init import on_device
from .linear import init_linear, linear
from .network import Network


def layer_norm(x: Tensor, dim: int | tuple[int, ...] = -1, eps: float = 1e-5) -> Tensor:
    r""":math:`y = (x - \mathrm{E}[x]) / \sqrt{\mathrm{Var}[x] + \epsilon}` over ``dim``
    (unbiased variance, no affine parameters, as Zuko's ``LayerNorm``)."""

    var, mean = torch.var_mean(x, dim=dim, unbiased=True, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


def two_way_elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    r""":math:`\mathrm{ELU}` on the first half of the features, :math:`-\mathrm{ELU}(-x)` on the second."""

    x0, x1 = torch.chunk(x, 2, dim=-1)
    return torch.cat((F.elu(x0, alpha), -F.elu(-x1, alpha)), dim=-1)


class Linear(Network):
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
        self.stack = None if stack is None else int(stack)
        self.input_shape = (self.in_features,) if self.stack is None else (self.stack, self.in_features)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return init_linear(self.in_features, self.out_features, self.bias, generator, dtype, device, self.stack)

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        return linear(x, params["weight"], params.get("bias"))


class MonotonicLinear(Linear):
    r"""Monotonic linear layer :math:`y = x |W|^T + b` (Zuko's ``MonotonicLinear``).

    Example:
        >>> layer = MonotonicLinear(3, 2)
        >>> J = torch.func.jacrev(lambda x: layer.apply(layer.init(), x))(torch.randn(3))
        >>> bool((J >= 0).all())
        True
    """

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        return linear(x, params["weight"].abs(), params.get("bias"))


class MaskedLinear(Network):
    r"""Masked linear layer :math:`y = x (W \odot A)^T + b` (Zuko's ``MaskedLinear``:
    ``adjacency`` of shape (out, in); the mask is state).

    Example:
        >>> layer = MaskedLinear(torch.tensor([[True, False], [True, True]]))
        >>> J = torch.func.jacrev(lambda x: layer.apply(layer.init(), x))(torch.randn(2))
        >>> bool(J[0, 1] == 0)
        True
    """

    def __init__(self, adjacency: Tensor, bias: bool = True) -> None:
        self.adjacency = torch.as_tensor(adjacency, dtype=torch.bool).clone()
        self.out_features, self.in_features = self.adjacency.shape
        self.bias = bool(bias)
        self.input_shape = (self.in_features,)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return init_linear(self.in_features, self.out_features, self.bias, generator, dtype, device)

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {"mask": on_device(self.adjacency.clone, self.adjacency.shape, torch.bool, device)}

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        return linear(x, params["weight"], params.get("bias"), state["mask"])


class LayerNorm(Network):
    r""":func:`layer_norm` over ``dim`` as a (parameter-free) network.

    Example:
        >>> y = LayerNorm().apply({}, torch.randn(2, 5))
        >>> torch.allclose(y.mean(-1), torch.zeros(2), atol=1e-6)
        True
    """

    def __init__(self, dim: int | Iterable[int] = -1, eps: float = 1e-5) -> None:
        self.dim = dim if isinstance(dim, int) else tuple(dim)
        self.eps = float(eps)

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        return layer_norm(x, self.dim, self.eps)


class Residual(Network):
    r"""Residual block :math:`y = x + g_n(\cdots g_1(x))`.

    Layers are networks (parameters under ``"<position>"``) or parameter-free callables
    (activations), in ``nn.Sequential`` positions as in Zuko's ``Residual``.

    Example:
        >>> block = Residual(Linear(4, 4), torch.nn.ReLU(), Linear(4, 4))
        >>> block.apply(block.init(), torch.randn(3, 4)).shape
        torch.Size([3, 4])
    """

    def __init__(self, *layers: Network | Callable[[Tensor], Tensor]) -> None:
        self.layers = tuple(layers)

    def _networks(self) -> list[tuple[str, Network]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers) if isinstance(layer, Network)]

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {name: layer.init(generator, dtype=dtype, device=device)
                for name, layer in self._networks() if layer.param_shapes}

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return {name: layer.init_state(dtype=dtype, device=device)
                for name, layer in self._networks() if layer.state_shapes}

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        y = x
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Network):
                y = layer._apply(params.get(str(i), {}), y, state.get(str(i), {}))
            else:
                y = layer(y)
        return x + y
