r"""Pure multi-layer perceptrons: plain and masked (autoregressive structure)."""

from __future__ import annotations

__all__ = ["MLP", "MaskedMLP", "masked_mlp_masks"]

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .init import on_device
from .layers import layer_norm
from .linear import init_linear, linear
from .network import Network


def _activation(activation: Callable[[], nn.Module] | None) -> nn.Module:
    act = nn.ReLU() if activation is None else activation()
    if isinstance(act, nn.Module) and any(True for _ in act.parameters()):
        raise ValueError(
            f"activation {type(act).__name__} has parameters; the pure networks need a "
            "parameter-free activation (e.g. nn.ReLU, nn.ELU, nn.SiLU)"
        )
    return act


class MLP(Network):
    r"""Multi-layer perceptron :math:`h_{i+1} = a(h_i W_{i+1}^T + b_{i+1})`.

    Parameter names follow ``torch.nn.Sequential`` positions (``"0"``, ``"2"``, ...;
    ``"0"``, ``"3"``, ... with ``normalize=True``), as Zuko's ``MLP`` module does.

    Arguments:
        in_features: input size.
        out_features: output size.
        hidden_features: hidden sizes.
        activation: a parameter-free activation constructor (default ``nn.ReLU``).
        normalize: standardize features after each hidden activation.
        bias: whether layers have biases.
        stack: the number of stacked networks :math:`S` (inputs :math:`(*, S, I)`).

    Example:
        >>> net = MLP(3, 2, [16])
        >>> params = net.init(torch.Generator().manual_seed(0))
        >>> net.apply(params, torch.randn(5, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: Sequence[int] = (64, 64),
        activation: Callable[[], nn.Module] | None = None,
        normalize: bool = False,
        bias: bool = True,
        stack: int | None = None,
    ) -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.hidden_features = hidden_sizes(hidden_features)
        self.act = _activation(activation)
        self.normalize = bool(normalize)
        self.bias = bool(bias)
        self.stack = None if stack is None else int(stack)
        step = 3 if normalize else 2
        self.names = tuple(str(step * i) for i in range(len(self.hidden_features) + 1))
        sizes = (self.in_features, *self.hidden_features, self.out_features)
        self.sizes = tuple(zip(sizes[:-1], sizes[1:], strict=True))
        self.input_shape = (self.in_features,) if self.stack is None else (self.stack, self.in_features)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return {
            name: init_linear(i, o, self.bias, generator, dtype, device, self.stack)
            for name, (i, o) in zip(self.names, self.sizes, strict=True)
        }

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        last = len(self.names) - 1
        for i, name in enumerate(self.names):
            layer = params[name]
            x = linear(x, layer["weight"], layer.get("bias"))
            if i < last:
                x = self.act(x)
                if self.normalize:
                    x = layer_norm(x)
        return x


def _subset(a: Tensor, b: Tensor) -> Tensor:
    r"""``[j, i] = a[i] ⊆ b[j]`` for rows of 0/1 matrices."""

    return (b @ a.T) == a.sum(dim=-1)


def hidden_sizes(hidden_features: Sequence[int]) -> tuple[int, ...]:
    r"""The hidden sizes as a tuple of ints; a clear :class:`TypeError` for a single number.

    Example:
        >>> hidden_sizes([64, 64])
        (64, 64)
    """

    if not isinstance(hidden_features, Iterable) or isinstance(hidden_features, (str, Tensor)):
        raise TypeError(f"hidden_features should be a sequence of layer sizes, e.g. [64, 64]; "
                        f"got {hidden_features!r}")
    return tuple(int(h) for h in hidden_features)


def _hidden_sets(A: Tensor, hidden_features: Sequence[int]) -> list[Tensor]:
    rows = [r for r in torch.unique(A, dim=0) if bool(r.any())]
    if not rows:
        raise ValueError("the adjacency matrix leads to a null Jacobian (no output depends on any input)")
    # Small sets first so that the cycle covers the most constrained outputs.
    rows.sort(key=lambda r: (int(r.sum()), r.int().tolist()))
    sets = torch.stack(rows).float()
    return [sets[torch.arange(h) % len(rows)] for h in hidden_features]


def masked_mlp_masks(adjacency: Tensor, hidden_features: Sequence[int]) -> list[Tensor]:
    r"""Masks of a masked MLP whose Jacobian respects ``adjacency``.

    ``adjacency[i, j]`` says whether output :math:`i` may depend on input :math:`j`.
    Each hidden unit :math:`h` is given a dependency set :math:`S_h` cycling over
    the distinct non-empty rows of ``adjacency``; unit :math:`h` reads input
    :math:`j` iff :math:`j \in S_h`, reads hidden unit :math:`g` of the previous
    layer iff :math:`S_g \subseteq S_h`, and output :math:`i` reads :math:`h` iff
    :math:`S_h \subseteq A_i`. Hence every path from input :math:`j` to output
    :math:`i` passes through sets containing :math:`j` and contained in
    :math:`A_i`, so :math:`\partial y_i / \partial x_j = 0` unless :math:`A_{ij}`.
    """

    A = torch.as_tensor(adjacency, dtype=torch.bool)
    sets = _hidden_sets(A, hidden_features)
    masks = [sets[0].bool()] + [_subset(a, b) for a, b in zip(sets[:-1], sets[1:])] if sets else []
    masks.append(_subset(sets[-1], A.float()) if sets else A.clone())
    return masks


def _plan(A: Tensor, hidden: Sequence[int], residual: bool) -> list[tuple[str, str, int, int, Tensor]]:
    masks = masked_mlp_masks(A, hidden)
    sizes = (A.shape[1], *hidden, A.shape[0])
    if not residual:
        return [(str(2 * i), "linear", sizes[i], sizes[i + 1], m) for i, m in enumerate(masks)]
    sets = _hidden_sets(A, hidden)
    plan, k = [], 0
    for i, h in enumerate(hidden):
        if i == 0 or h != hidden[i - 1]:  # a square hidden-to-hidden linear is replaced by the block
            plan.append((str(k), "linear", sizes[i], h, masks[i]))
            k += 1
        plan.append((str(k), "residual", h, h, _subset(sets[i], sets[i])))  # S_g ⊆ S_h within the layer
        k += 1
    plan.append((str(k), "linear", sizes[-2], sizes[-1], masks[-1]))
    return plan


class MaskedMLP(Network):
    r"""Masked MLP: :math:`\partial y_i / \partial x_j = 0` unless :math:`A_{ij}`.

    Each layer computes :math:`h (W \odot M)^T + b`. Weights and biases are
    trainable parameters; the masks :math:`M` are non-trainable state (so a loaded
    checkpoint's masks are used as they are).

    Arguments:
        adjacency: boolean matrix :math:`A` of shape (out, in).
        hidden_features: hidden sizes.
        activation: a parameter-free activation constructor (default ``nn.ReLU``).

    Example:
        >>> A = torch.tensor([[0, 0], [1, 0]], dtype=torch.bool)
        >>> net = MaskedMLP(A, [8])
        >>> y = net.apply(net.init(), torch.randn(2))
        >>> y.shape
        torch.Size([2])
    """

    def __init__(
        self,
        adjacency: Tensor,
        hidden_features: Sequence[int] = (64, 64),
        activation: Callable[[], nn.Module] | None = None,
        residual: bool = False,
    ) -> None:
        self.adjacency = torch.as_tensor(adjacency, dtype=torch.bool).clone()
        self.out_features, self.in_features = self.adjacency.shape
        self.hidden_features = hidden_sizes(hidden_features)
        self.act = _activation(activation)
        self.residual = bool(residual)
        # The layer plan (computed once: data-dependent ops, so that ``init_state`` is a
        # plain copy that also runs inside ``torch.compile(fullgraph=True)``): entries
        # (name, kind, in, out, masks) with kind "linear" or "residual" (Zuko's layout:
        # without residual, masked linears at even positions with activations between;
        # with residual, linear, residual block(s) x + W2 a(W1 x) per hidden layer, linear).
        self.plan = tuple(_plan(self.adjacency, self.hidden_features, self.residual))
        self.names = tuple(entry[0] for entry in self.plan)
        self.input_shape = (self.in_features,)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        r"""Fresh weights, drawn in the order of Zuko's constructor. With ``residual``, Zuko's
        also draws layers it then drops (the square linear a block replaces, and a block after
        the output layer); they are drawn and dropped here too, so that a seeded build gives
        Zuko's weights and leaves the generator where Zuko's leaves it."""

        def layer(i: int, o: int) -> dict[str, Tensor]:
            return init_linear(i, o, True, generator, dtype, device)

        params: dict[str, Any] = {}
        previous = None
        for name, kind, i, o, _ in self.plan:
            if kind == "linear":
                params[name] = layer(i, o)
                if self.residual and name == self.names[-1]:
                    layer(i, i), layer(i, i)  # Zuko's block after the output layer, dropped
            else:
                if previous == "residual":
                    layer(i, o)  # Zuko's square linear, replaced by this block
                params[name] = {k: layer(i, o) for k in ("0", "2")}
            previous = kind
        return params

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        def mask(m: Tensor) -> dict[str, Tensor]:
            return {"mask": on_device(m.clone, m.shape, torch.bool, device)}

        return {name: mask(masks) if kind == "linear" else {"0": mask(masks), "2": mask(masks)}
                for name, kind, _, _, masks in self.plan}

    def _apply(self, params: Mapping[str, Any], x: Tensor, state: Mapping[str, Any]) -> Tensor:
        last = len(self.plan) - 1
        for i, (name, kind, *_) in enumerate(self.plan):
            p, s = params[name], state[name]
            if kind == "linear":
                x = linear(x, p["weight"], p["bias"], s["mask"])
                if i < last and not self.residual:
                    x = self.act(x)
            else:
                h = self.act(linear(x, p["0"]["weight"], p["0"]["bias"], s["0"]["mask"]))
                x = x + linear(h, p["2"]["weight"], p["2"]["bias"], s["2"]["mask"])
        return x
