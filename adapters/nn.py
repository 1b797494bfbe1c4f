r"""Zuko-compatible network modules (``zuko.nn`` names), each the module Zuko has.

``MLP``, ``MaskedMLP``, ``MonotonicMLP`` and ``Residual`` are ``nn.Sequential``\ s of layer
modules (``Linear``, ``MaskedLinear`` — an ``nn.Linear`` —, ``MonotonicLinear``,
``LayerNorm``) and activation modules, laid out as Zuko lays them out, so ``net(x)``,
``net[0](x)``, ``len(net)``, hooks and parametrizations work as on Zuko's. Every layer's
forward is the pure function of :mod:`lazydist_functional.nn`, and a network built from a
pure network spec keeps it (``net.spec``): a parent module that reads an unedited network
computes it with that spec on the network's current tensors, which gives the same values.
"""

__all__ = ["MLP", "Linear", "MaskedMLP", "MonotonicMLP"]

from collections.abc import Callable, Iterable, Sequence  # noqa: F401  (zuko.nn's namespace)
import copy as _copy
from collections.abc import Mapping as _Mapping
from typing import Any as _Any

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (zuko.nn's namespace)
from torch import BoolTensor, Tensor  # noqa: F401  (zuko.nn's namespace)

from .. import nn as _nn
from ..nn import layer_norm as _layer_norm
from ..nn import linear as _linear
from ..spec import Parametric as _Parametric
from .module import SpecModule as _SpecModule
from .module import _freeze
from .module import module_class as _module_class


def _fill(module: nn.Module, spec: _Parametric, layers: Sequence[nn.Module]) -> nn.Module:
    r"""Initializes ``module`` (an ``nn.Sequential``) as holding ``spec`` and ``layers``."""

    nn.Module.__init__(module)
    module.__dict__["_spec"] = spec
    for i, layer in enumerate(layers):
        module.add_module(str(i), layer)
    _freeze(module)
    return module


def _stateless(act: nn.Module) -> nn.Module:
    _freeze(act)
    return act


def linear(x: Tensor, W: Tensor, b: Tensor | None = None) -> Tensor:
    r"""``zuko.nn.linear`` (Zuko's argument names): :math:`y = x W^T + b`, or with a stack
    of weights :math:`W` of shape :math:`(S, O, I)` on inputs :math:`(*, S, I)`.

    Example:
        >>> linear(torch.ones(2, 3), W=torch.ones(4, 3)).shape
        torch.Size([2, 4])
    """

    return _linear(x, W, b)


def _populate_linear(self: _Any, spec: _Parametric, params: _Any, state: _Any, generator: _Any) -> None:
    r"""Registers a linear layer's tensors; without bias, ``bias`` is ``None`` (as ``nn.Linear``)."""

    _SpecModule._populate(self, spec, params, state, generator)
    if "bias" not in self._parameters:
        self._parameters["bias"] = None  # not ``register_parameter``: the spec's ``bias`` flag answers ``hasattr``
        _freeze(self)


@_module_class(_nn.Linear)
class Linear(_SpecModule):
    r"""Linear layer :math:`y = x W^T + b`, or ``stack`` independent ones on inputs
    :math:`(*, S, C)` (``zuko.nn.Linear``).

    Example:
        >>> Linear(3, 2, stack=4)(torch.randn(5, 4, 3)).shape
        torch.Size([5, 4, 2])
    """

    _network: type = _nn.Linear

    def __init__(self, in_features: int, out_features: int, bias: bool = True, stack: int | None = None) -> None:
        super().__init__(self._network(in_features, out_features, bias, stack))

    _populate = _populate_linear

    def reset_parameters(self) -> None:
        r"""Redraws the weight and the bias from :math:`\mathcal{U}(-1/\sqrt{C}, 1/\sqrt{C})`, with
        :math:`C` the input features (torch's global generator), as Zuko's ``Linear``."""

        bound = 1 / self.weight.shape[-1] ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        stack, (fout, fin) = (self.weight.shape[0] if self.weight.dim() == 3 else None), self.weight.shape[-2:]
        text = f"in_features={fin}, out_features={fout}, bias={self.bias is not None}"
        return text if stack is None else f"{text}, stack={stack}"

    def forward(self, x: Tensor) -> Tensor:
        return _linear(x, self.weight, self.bias)


@_module_class(_nn.MonotonicLinear)
class MonotonicLinear(Linear):
    r"""Monotonic linear layer :math:`y = x |W|^T + b` (``zuko.nn.MonotonicLinear``).

    Example:
        >>> MonotonicLinear(3, 2)(torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    _network = _nn.MonotonicLinear

    def forward(self, x: Tensor) -> Tensor:
        return _linear(x, self.weight.abs(), self.bias)


@_module_class(_nn.MaskedLinear)
class MaskedLinear(nn.Linear, _SpecModule):
    r"""Masked linear layer :math:`y = x (W \odot A)^T + b` (``zuko.nn.MaskedLinear``: an
    ``nn.Linear`` with the buffer ``mask``).

    Example:
        >>> MaskedLinear(torch.tensor([[True, False], [True, True]]))(torch.randn(2)).shape
        torch.Size([2])
    """

    def __init__(self, adjacency: BoolTensor, bias: bool = True) -> None:
        _SpecModule.__init__(self, _nn.MaskedLinear(adjacency, bias))

    _populate = _populate_linear

    def forward(self, x: Tensor) -> Tensor:
        return _linear(x, self.weight, self.bias, self.mask)


@_module_class(_nn.LayerNorm)
class LayerNorm(_SpecModule):
    r"""Standardizes features along ``dim`` (no parameters), as ``zuko.nn.LayerNorm``.

    Example:
        >>> LayerNorm()(torch.randn(2, 5)).shape
        torch.Size([2, 5])
    """

    def __init__(self, dim: int | Iterable[int] = -1, eps: float = 1e-5) -> None:
        super().__init__(_nn.LayerNorm(dim, eps))

    def forward(self, x: Tensor) -> Tensor:
        return _layer_norm(x, self.dim, self.eps)


class _Network(_SpecModule, nn.Sequential):
    r"""An ``nn.Sequential`` of layer modules built from a pure network spec."""

    forward = nn.Sequential.forward

    @classmethod
    def from_spec(cls, spec: _Parametric, params: _Mapping | None = None, state: _Mapping | None = None,
                  generator: torch.Generator | None = None) -> "_Network":
        r"""The module of a pure network spec holding ``params``/``state`` (default: fresh init)."""

        params, state = spec.init_trees(params, state, generator)
        return _fill(object.__new__(cls), spec, cls._layers(spec, params, state))

    @classmethod
    def _layers(cls, spec: _Any, params: _Mapping, state: _Mapping) -> list[nn.Module]:
        raise NotImplementedError

    def _init_from(self, spec: _Parametric) -> None:
        r"""The Zuko-signature constructors: fills ``self`` from a fresh spec."""

        params, state = spec.init_trees()
        _fill(self, spec, self._layers(spec, params, state))


def _mlp_layers(spec: _Any, params: _Mapping, linear_cls: type, core_linear: type, act: Callable[[], nn.Module],
                normalize: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    last = len(spec.names) - 1
    for i, (name, (n_in, n_out)) in enumerate(zip(spec.names, spec.sizes, strict=True)):
        layers.append(linear_cls.from_spec(core_linear(n_in, n_out, spec.bias, spec.stack), params[name]))
        if i < last:
            layers.append(_stateless(act()))
            if normalize:
                layers.append(LayerNorm.from_spec(_nn.LayerNorm()))
    return layers


@_module_class(_nn.MLP)
class MLP(_Network):
    r"""Multi-layer perceptron (:class:`lazydist_functional.nn.MLP`; ``zuko.nn.MLP``'s
    arguments, layers and parameter names): ``Linear``, activation, [``LayerNorm``], ...

    Example:
        >>> net = MLP(3, 2, [16])
        >>> net(torch.randn(5, 3)).shape, type(net[0]).__name__, type(net[1]).__name__
        (torch.Size([5, 2]), 'Linear', 'ReLU')
    """

    def __init__(self, in_features: int, out_features: int, *args: _Any, **kwargs: _Any) -> None:
        self._init_from(_nn.MLP(in_features, out_features, *args, **kwargs))

    @classmethod
    def _layers(cls, spec: _Any, params: _Mapping, state: _Mapping) -> list[nn.Module]:
        return _mlp_layers(spec, params, Linear, _nn.Linear, lambda: _copy.deepcopy(spec.act), spec.normalize)


@_module_class(_nn.MonotonicMLP)
class MonotonicMLP(MLP):
    r"""Monotonic MLP (:class:`lazydist_functional.nn.MonotonicMLP`; ``zuko.nn.MonotonicMLP``'s
    arguments, layers and parameter names, plus ``stack``): ``MonotonicLinear`` layers and
    ``TwoWayELU`` activations.

    Example:
        >>> net = MonotonicMLP(3, 4, [16, 32])
        >>> net(torch.randn(5, 3)).shape
        torch.Size([5, 4])
    """

    def __init__(self, in_features: int, out_features: int, *args: _Any, **kwargs: _Any) -> None:
        self._init_from(_nn.MonotonicMLP(in_features, out_features, *args, **kwargs))

    @classmethod
    def _layers(cls, spec: _Any, params: _Mapping, state: _Mapping) -> list[nn.Module]:
        return _mlp_layers(spec, params, MonotonicLinear, _nn.MonotonicLinear, TwoWayELU, False)


@_module_class(_nn.Residual)
class Residual(_Network):
    r"""Residual block :math:`x + g(x)` over layer modules (``zuko.nn.Residual``).

    Example:
        >>> block = Residual(Linear(4, 4), nn.ReLU(), Linear(4, 4))
        >>> block(torch.randn(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, *layers: nn.Module) -> None:
        nn.Module.__init__(self)
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)
        specs = [layer.__dict__.get("_spec") if isinstance(layer, _SpecModule) else layer for layer in layers]
        if all(s is not None for s in specs):
            self.__dict__["_spec"] = _nn.Residual(*specs)
            for layer in layers:
                if not isinstance(layer, _SpecModule):
                    _stateless(layer)
            _freeze(self)

    def forward(self, x: Tensor) -> Tensor:
        return x + nn.Sequential.forward(self, x)

    @classmethod
    def _layers(cls, spec: _Any, params: _Mapping, state: _Mapping) -> list[nn.Module]:
        return [_to_layer(layer, params.get(str(i), {}), state.get(str(i), {})) for i, layer in enumerate(spec.layers)]


def _to_layer(layer: _Any, params: _Mapping, state: _Mapping) -> nn.Module:
    r"""The module of one layer of a pure network: a registered module, or the
    parameter-free callable itself (an activation module)."""

    if isinstance(layer, _Parametric):
        return _layer_module(layer).from_spec(layer, params, state)
    return _stateless(layer)


def _layer_module(layer: _Parametric) -> type:
    for cls in type(layer).__mro__:
        if cls in _LAYERS:
            return _LAYERS[cls]
    raise TypeError(f"no adapter module for the layer {type(layer).__name__}")


_LAYERS = {_nn.Linear: Linear, _nn.MonotonicLinear: MonotonicLinear, _nn.MaskedLinear: MaskedLinear,
           _nn.LayerNorm: LayerNorm, _nn.Residual: Residual}


@_module_class(_nn.MaskedMLP)
class MaskedMLP(_Network):
    r"""Masked MLP whose Jacobian respects ``adjacency`` (:class:`lazydist_functional.nn.MaskedMLP`;
    ``zuko.nn.MaskedMLP``'s layers: ``MaskedLinear``\ s and activations, or ``Residual``
    blocks with ``residual=True``; masks are buffers).

    Example:
        >>> net = MaskedMLP(torch.tensor([[False, False], [True, False]]), [8])
        >>> net(torch.randn(2)).shape, type(net[0]).__name__
        (torch.Size([2]), 'MaskedLinear')
    """

    def __init__(self, adjacency: BoolTensor, *args: _Any, **kwargs: _Any) -> None:
        self._init_from(_nn.MaskedMLP(adjacency, *args, **kwargs))

    @classmethod
    def _layers(cls, spec: _Any, params: _Mapping, state: _Mapping) -> list[nn.Module]:
        layers: list[nn.Module] = []
        last = len(spec.plan) - 1
        for i, (name, kind, n_in, n_out, mask) in enumerate(spec.plan):
            if kind == "linear":
                layers.append(MaskedLinear.from_spec(_nn.MaskedLinear(mask), params[name], state[name]))
                if i < last and not spec.residual:
                    layers.append(_stateless(_copy.deepcopy(spec.act)))
            else:
                block = _nn.Residual(_nn.MaskedLinear(mask), _copy.deepcopy(spec.act), _nn.MaskedLinear(mask))
                layers.append(Residual.from_spec(block, params[name], state[name]))
        return layers


class TwoWayELU(nn.ELU):
    r""":math:`\mathrm{ELU}(x)` on the first half of the features and :math:`-\mathrm{ELU}(-x)`
    on the second (``zuko.nn.TwoWayELU``; :func:`lazydist_functional.nn.two_way_elu`).

    Example:
        >>> TwoWayELU()(torch.tensor([-1.0, 1.0]))
        tensor([-0.6321,  0.6321])
    """

    def forward(self, x: Tensor) -> Tensor:
        return _nn.two_way_elu(x, self.alpha)

