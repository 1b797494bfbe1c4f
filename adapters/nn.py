r"""Zuko-compatible network modules (``zuko.nn`` names).

Each is a :class:`~lazydist_functional.adapters.SpecModule` of a pure network
(:mod:`lazydist_functional.nn`): the generic forward ``network.apply_checked(own
params, x, own buffers)`` is the module's forward, as for flows.
"""

__all__ = ["MLP", "Linear", "MaskedMLP", "MonotonicMLP"]

from collections.abc import Callable, Iterable, Sequence  # noqa: F401  (zuko.nn's namespace)
from typing import Any as _Any

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (zuko.nn's namespace)
from torch import BoolTensor, Tensor  # noqa: F401  (zuko.nn's namespace)

from .. import nn as _nn
from ..nn import linear
from .module import SpecModule as _SpecModule


class Linear(_SpecModule):
    r"""Linear layer :math:`y = x W^T + b`, or ``stack`` independent ones on inputs
    :math:`(*, S, C)` (``zuko.nn.Linear``).

    Example:
        >>> Linear(3, 2, stack=4)(torch.randn(5, 4, 3)).shape
        torch.Size([5, 4, 2])
    """

    _network = _nn.Linear

    def __init__(self, in_features: int, out_features: int, bias: bool = True, stack: int | None = None) -> None:
        super().__init__(self._network(in_features, out_features, bias, stack))
        self.in_features, self.out_features = in_features, out_features


class MonotonicLinear(Linear):
    r"""Monotonic linear layer :math:`y = x |W|^T + b` (``zuko.nn.MonotonicLinear``).

    Example:
        >>> MonotonicLinear(3, 2)(torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    _network = _nn.MonotonicLinear


class MaskedLinear(nn.Linear, _SpecModule):
    r"""Masked linear layer :math:`y = x (W \odot A)^T + b` (``zuko.nn.MaskedLinear``: an
    ``nn.Linear`` with the buffer ``mask``; the forward is the pure network's).

    Example:
        >>> MaskedLinear(torch.tensor([[True, False], [True, True]]))(torch.randn(2)).shape
        torch.Size([2])
    """

    def __init__(self, adjacency: BoolTensor, bias: bool = True) -> None:
        _SpecModule.__init__(self, _nn.MaskedLinear(adjacency, bias))  # not nn.Linear's: the spec's trees
        self.out_features, self.in_features = adjacency.shape

    forward = _SpecModule.forward


class MLP(_SpecModule, nn.Sequential):
    r"""Multi-layer perceptron (:class:`lazydist_functional.nn.MLP`; ``zuko.nn.MLP``'s
    arguments and parameter names). An ``nn.Sequential`` by class, as Zuko's; its
    children hold the layers' parameters.

    Example:
        >>> net = MLP(3, 2, [16])
        >>> net(torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    _network: type = _nn.MLP

    def __init__(self, in_features: int, out_features: int, *args: _Any, **kwargs: _Any) -> None:
        super().__init__(self._network(in_features, out_features, *args, **kwargs))
        self.in_features, self.out_features = in_features, out_features


class MaskedMLP(_SpecModule, nn.Sequential):
    r"""Masked MLP whose Jacobian respects ``adjacency`` (:class:`lazydist_functional.nn.MaskedMLP`;
    masks are buffers, ``zuko.nn.MaskedMLP``'s layout).

    Example:
        >>> net = MaskedMLP(torch.tensor([[False, False], [True, False]]), [8])
        >>> net(torch.randn(2)).shape
        torch.Size([2])
    """

    def __init__(self, adjacency: BoolTensor, *args: _Any, **kwargs: _Any) -> None:
        super().__init__(_nn.MaskedMLP(adjacency, *args, **kwargs))
        self.out_features, self.in_features = adjacency.shape


class MonotonicMLP(MLP):
    r"""Monotonic MLP (:class:`lazydist_functional.nn.MonotonicMLP`; ``zuko.nn.MonotonicMLP``'s
    arguments and parameter names, plus ``stack``).

    Example:
        >>> net = MonotonicMLP(3, 4, [16, 32])
        >>> net(torch.randn(5, 3)).shape
        torch.Size([5, 4])
    """

    _network = _nn.MonotonicMLP


class LayerNorm(_SpecModule):
    r"""Standardizes features along ``dim`` (no parameters), as ``zuko.nn.LayerNorm``.

    Example:
        >>> LayerNorm()(torch.randn(2, 5)).shape
        torch.Size([2, 5])
    """

    def __init__(self, dim: int | Iterable[int] = -1, eps: float = 1e-5) -> None:
        super().__init__(_nn.LayerNorm(dim, eps))


class Residual(_SpecModule, nn.Sequential):
    r"""Residual block :math:`x + g(x)` over adapter layers or parameter-free modules.

    Example:
        >>> block = Residual(Linear(4, 4), nn.ReLU(), Linear(4, 4))
        >>> block(torch.randn(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, *layers: _Any) -> None:
        specs = [layer.spec if isinstance(layer, _SpecModule) else layer for layer in layers]
        trees = [layer.trees() if isinstance(layer, _SpecModule) else ({}, {}) for layer in layers]
        params = {str(i): p for i, (p, _) in enumerate(trees) if p}
        state = {str(i): s for i, (_, s) in enumerate(trees) if s}
        super().__init__(_nn.Residual(*specs), params, state)


class TwoWayELU(nn.ELU):
    r""":math:`\mathrm{ELU}(x)` on the first half of the features and :math:`-\mathrm{ELU}(-x)`
    on the second (``zuko.nn.TwoWayELU``; :func:`lazydist_functional.nn.two_way_elu`).

    Example:
        >>> TwoWayELU()(torch.tensor([-1.0, 1.0]))
        tensor([-0.6321,  0.6321])
    """

    def forward(self, x: Tensor) -> Tensor:
        return _nn.two_way_elu(x, self.alpha)
