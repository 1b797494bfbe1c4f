r"""Neural autoregressive flows (NAF, UNAF): monotonic networks as univariate transforms.

The univariate transform of each feature is a monotonic function of :math:`x_i`
modulated by a *signal* vector that the masked hyper-network computes from
:math:`(x_{<i}, c)`. Its network weights are trainable parameters of the lazy
transform (under ``"univariate"``, Zuko's names), shared across contexts and
stacked over features.
"""

from __future__ import annotations

__all__ = ["MNN", "NAF", "UMNN", "UNAF", "NeuralAutoregressiveTransform"]

from functools import partial
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch._C._functorch import is_batchedtensor
from torch.distributions import Transform

from ..nn import MLP, linear
from ..nn.monotonic import MonotonicMLP, fold_signs, folded_value_and_tangent, folded_value_and_tangent_inplace
from ..nn.monotonic import per_operator, per_operator_linear, unit_output_linear
from ..pytree import Partial, tree_map
from ..spec import Parametric, Spec
from ..transforms import AdditiveTransform, ComposedTransform, DependentTransform, soft_bound, take
from ..transforms import MonotonicTransform, UnconstrainedMonotonicTransform
from ..transforms.monotonic.quadrature import INVERSE_NODES, gauss_legendre_rule
from ._conditioner import broadcast, unpack
from .common import autoregressive_layers, standard_base, with_softclips
from .core import Flow
from .grouped import GroupedMaskedAutoregressiveTransform


def _first_layer(layer: Mapping[str, Tensor], signal: Tensor, monotonic: bool) -> tuple[Tensor, Tensor]:
    r"""Splits the first layer on ``cat(x, signal)`` into the signal's part (computed once)
    and the column of :math:`x`: :math:`z = s + w x`."""

    W = layer["weight"].abs() if monotonic else layer["weight"]
    s = per_operator_linear(signal, W[..., 1:], layer.get("bias"))
    return s, W[..., 0]


def _with_signal(x: Tensor, signal: Tensor) -> Tensor:
    r"""The network input :math:`[x_i, \text{signal}_i]` of each feature: (*, D, 1 + S)."""

    return torch.cat(broadcast(x[..., None], signal, ignore=1), dim=-1)


def _mnn_f_and_df(s: Tensor, w: Tensor, weights: tuple, biases: tuple, x: Tensor) -> tuple[Tensor, Tensor]:
    y, dy = folded_value_and_tangent(s + w * x[..., None], w, weights, biases)
    return y.squeeze(-1), dy.squeeze(-1)


def _mnn_iterate(s: Tensor, w: Tensor, weights: tuple, biases: tuple, x: Tensor) -> tuple[Tensor, Tensor]:
    # The inverse's detached iterations: the same values, intermediates reused in place.
    y, dy = folded_value_and_tangent_inplace(torch.addcmul(s, w, x[..., None]), w, weights, biases)
    return y.squeeze(-1), dy.squeeze(-1)


def _mnn_f(s: Tensor, w: Tensor, weights: tuple, biases: tuple, x: Tensor) -> Tensor:
    return _mnn_f_and_df(s, w, weights, biases, x)[0]


class MNN(Parametric):
    r"""Monotonic neural network: :math:`f(x) = \mathrm{MonotonicMLP}([x, \text{signal}])`.

    The network's weights are parameters (``"network"``); the signal comes from the
    hyper-network. :meth:`transform` returns a
    :class:`~lazydist_functional.transforms.MonotonicTransform` with the analytic
    derivative (forward-mode through the network), so its log-determinant and its
    Newton inverse need no autograd.

    Arguments:
        signal: the number of signal features.
        iterations: the safeguarded Newton iterations of the inverse. 8 by default: from
            :math:`x = 0` they reach float32's round-off in 4 (at initialization) to 6
            (NAFs trained to steep, clustered or curved densities, networks with 10x
            weights, roots up to :math:`|x| = 300`) iterations.
        bound: the scale of the inverse's search (never a clamp: the bracket widens
            geometrically, :math:`|x| \to 3 |x|`, until it holds the root). 100 by
            default: a search beyond the image (saturation) then reaches
            :math:`|x| \approx 1.5 \cdot 10^5` in 8 iterations, past the roots of the
            reachable points next to it (a scale of 10 needs 10 iterations for that),
            and far roots are found in fewer probes; roots near 0 converge as fast.
        kwargs: passed to :class:`~lazydist_functional.nn.MonotonicMLP` (``stack``,
            ``hidden_features``).
    """

    def __init__(self, signal: int = 16, iterations: int = 8, bound: float = 100.0, **kwargs: Any) -> None:
        self.signal = int(signal)
        self.iterations = int(iterations)
        self.bound = float(bound)
        self.network = MonotonicMLP(1 + self.signal, 1, **kwargs)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"network": self.network.init(generator, dtype=dtype, device=device)}

    def network_f(self, net: Mapping[str, Any], signal: Tensor, x: Tensor) -> Tensor:
        r""":math:`f(x) = \text{network}([x, \text{signal}])` by calling the network (any network)."""

        y = self.network._apply(net, _with_signal(x, signal), {})
        return y.squeeze(-1)

    def transform(self, params: Mapping[str, Any], signal: Tensor) -> Transform:
        net = params["network"]
        if type(self.network) is not MonotonicMLP:  # a user's network (adapter): derivative by jvp
            return MonotonicTransform(
                Partial(self.network_f, (net, signal)), bound=self.bound, iterations=self.iterations
            )
        names = self.network.names
        first = net[names[0]]
        W0, b0, Ws, bs = fold_signs(
            first["weight"], first.get("bias"), [net[n]["weight"] for n in names[1:]],
            [net[n].get("bias") for n in names[1:]],
        )
        s = per_operator_linear(signal, W0[..., 1:], b0)
        args = (s, W0[..., 0], tuple(Ws), tuple(bs))
        return MonotonicTransform(
            Partial(_mnn_f, args), f_and_df=Partial(_mnn_f_and_df, args), bound=self.bound,
            iterations=self.iterations, iterate=Partial(_mnn_iterate, args),
        )


def _umnn_g(s: Tensor, w: Tensor, weights: tuple, biases: tuple, x: Tensor, *, act: Callable) -> Tensor:
    z = s + w * x[..., None]
    if per_operator(z, weights) and not any(b is not None and is_batchedtensor(b) for b in biases):
        # Compiled vmap over the inputs: each feature's network alone, plain GEMMs (see
        # ``per_operator``); the slice goes through the activation first, so the GEMM's
        # operand is contiguous and folds the vmapped dim into its rows.
        zs = [z[..., i, :] for i in range(weights[0].shape[0])]
        for W, b in zip(weights, biases, strict=True):
            zs = [unit_output_linear(act(zi), W[i], None if b is None else b[i]) for i, zi in enumerate(zs)]
        # ``stack``, not ``cat``: under a compiled vmap the batching rule of ``cat`` specializes
        # the vmapped size (one graph per batch size); ``stack``'s does not.
        dx = torch.stack([zi.squeeze(-1) for zi in zs], dim=-1)
    else:
        for W, b in zip(weights, biases, strict=True):
            z = linear(act(z), W, b)
        dx = z.squeeze(-1)
    return torch.exp(soft_bound(dx, 7.0))


class UMNN(Parametric):
    r"""Unconstrained monotonic neural network: :math:`f(x) = \int_0^x g(u)\,du + b` with
    :math:`g = \exp(\text{soft-bounded } \mathrm{MLP}([u, \text{signal}])) \in [10^{-3}, 10^3]`.

    Arguments:
        signal: the number of signal features.
        n: the number of Gauss–Legendre points.
        kwargs: passed to the integrand MLP (``stack``, ``hidden_features``,
            ``activation``, default ``nn.ELU``).
    """

    def __init__(self, signal: int = 16, n: int = 32, iterations: int = 12, stack: int | None = None,
                 hidden_features: Sequence[int] = (64, 64), activation: Callable[[], nn.Module] | None = None,
                 bias: bool = True) -> None:
        self.signal = int(signal)
        self.n = int(n)
        self.iterations = int(iterations)
        for nodes in (self.n, INVERSE_NODES):  # warm the quadrature rules (compile-safe reads)
            gauss_legendre_rule(nodes)
        self.integrand = MLP(1 + self.signal, 1, hidden_features, activation or nn.ELU, bias=bias, stack=stack)
        self.act = self.integrand.act
        self._g = partial(_umnn_g, act=self.act)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {"integrand": self.integrand.init(generator, dtype=dtype, device=device)}

    def integrand_g(self, net: Mapping[str, Any], signal: Tensor, x: Tensor) -> Tensor:
        r""":math:`g(x) = \exp(\text{soft-bounded integrand}([x, \text{signal}]))` by calling
        the integrand network (any network)."""

        dx = self.integrand._apply(net, _with_signal(x, signal), {})
        return torch.exp(soft_bound(dx.squeeze(-1), 7.0))

    def transform(self, params: Mapping[str, Any], signal: Tensor, constant: Tensor) -> Transform:
        net = params["integrand"]
        if type(self.integrand) is not MLP:  # a user's network (adapter)
            g = Partial(self.integrand_g, (net, signal))
            return ComposedTransform(
                UnconstrainedMonotonicTransform(g, n=self.n, iterations=self.iterations), AdditiveTransform(constant)
            )
        names = self.integrand.names
        s, w = _first_layer(net[names[0]], signal, monotonic=False)
        weights = tuple(net[n]["weight"] for n in names[1:])
        biases = tuple(net[n].get("bias") for n in names[1:])
        g = Partial(self._g, (s, w, weights, biases))
        return ComposedTransform(
            UnconstrainedMonotonicTransform(g, n=self.n, iterations=self.iterations),
            AdditiveTransform(constant),
        )


class NeuralAutoregressiveTransform(GroupedMaskedAutoregressiveTransform):
    r"""Masked autoregressive transform whose univariate transform has its own trainable
    parameters (a spec with ``init`` and ``transform(params, *phi)`` whose parameters
    are stacked over features), such as :class:`MNN` and :class:`UMNN`.

    Parameters: ``"hyper"`` (masked MLP) and ``"univariate"`` (Zuko's names).
    """

    part_attributes = {"univariate": "univariate_spec"}

    def __init__(self, features: int, context: int = 0, univariate: Spec | None = None,
                 shapes: Sequence[Sequence[int]] = ((16,),), **kwargs: Any) -> None:
        super().__init__(features, context, shapes=shapes, **kwargs)
        self.univariate_spec = univariate

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {
            "univariate": self.univariate_spec.init(generator, dtype=dtype, device=device),
            "hyper": self.hyper.init(generator, dtype=dtype, device=device),
        }

    def _extra(self, params: Mapping[str, Any]) -> Any:
        return params["univariate"]

    def select_extra(self, extra: Any, index: Tensor) -> Any:
        # Every univariate parameter is stacked over features (leading dimension).
        return tree_map(lambda t: take(t, index, dim=-t.dim()), extra)

    def univariate_of(self, phi: Tensor, extra: Any) -> Transform:
        return DependentTransform(self.univariate_spec.transform(extra, *unpack(phi, self.shapes)), 1)


def _neural_layers(features: int, context: int, transforms: int, randperm: bool,
                   univariate: Callable[[], Spec], shapes: list, **kwargs: Any) -> list[Spec]:
    r"""The autoregressive layers of NAF / UNAF (one monotonic network each), soft-clipped."""

    def layer(order: Tensor) -> Spec:
        return NeuralAutoregressiveTransform(
            features=features, context=context, order=order, univariate=univariate(), shapes=shapes, **kwargs
        )

    return with_softclips(autoregressive_layers(layer, features, transforms, randperm))


class NAF(Flow):
    r"""Neural autoregressive flow (NAF): autoregressive :class:`MNN` transforms, with
    soft-clipping to :math:`[-11, 11]` between them.

    Same signature, defaults and parameter names as ``zuko.flows.NAF``, plus
    ``iterations`` (Newton iterations of the inverse, 8 by default: see :class:`MNN`). The
    inverse is valid for features in :math:`[-10, 10]`; standardize features first.

    References:
        | Neural Autoregressive Flows (Huang et al., 2018)
        | https://arxiv.org/abs/1804.00779

    Example:
        >>> flow = NAF(3, 2, transforms=2, hidden_features=[16], network={"hidden_features": [8]})
        >>> params = flow.init(torch.Generator().manual_seed(0))
        >>> d = flow.apply(params, torch.randn(2))
        >>> x = d.sample((4,))
        >>> d.log_prob(x).shape
        torch.Size([4])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 signal: int = 16, network: dict[str, Any] = {}, iterations: int = 8,  # noqa: B006
                 **kwargs: Any) -> None:
        univariate = lambda: MNN(signal=signal, stack=features, iterations=iterations, **network)  # noqa: E731
        layers = _neural_layers(features, context, transforms, randperm, univariate, [(signal,)], **kwargs)
        super().__init__(layers, standard_base(features))
        self.features = int(features)


class UNAF(Flow):
    r"""Unconstrained neural autoregressive flow (UNAF): autoregressive :class:`UMNN`
    transforms, with soft-clipping to :math:`[-11, 11]` between them.

    Same signature, defaults and parameter names as ``zuko.flows.UNAF``, plus
    ``iterations`` (Newton iterations of the inverse).

    References:
        | Unconstrained Monotonic Neural Networks (Wehenkel et al., 2019)
        | https://arxiv.org/abs/1908.05164
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, randperm: bool = False,
                 signal: int = 16, network: dict[str, Any] = {}, iterations: int = 12,  # noqa: B006
                 **kwargs: Any) -> None:
        univariate = lambda: UMNN(signal=signal, stack=features, iterations=iterations, **network)  # noqa: E731
        layers = _neural_layers(features, context, transforms, randperm, univariate, [(signal,), ()], **kwargs)
        super().__init__(layers, standard_base(features))
        self.features = int(features)
