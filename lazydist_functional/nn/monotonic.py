r"""Pure monotonic multi-layer perceptron (positive Jacobian), with optional stacking."""

from __future__ import annotations

__all__ = ["MonotonicMLP", "per_operator", "per_operator_linear", "stacked_linear", "two_way_elu",
           "unit_output_linear"]

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch._C._functorch import is_batchedtensor

from ..functorch_levels import compiling_under_vmap
from .layers import two_way_elu
from .linear import init_linear, linear
from .mlp import hidden_sizes
from .network import Network


#: Deprecated alias of :func:`~lazydist_functional.nn.linear` (which handles stacked weights).
stacked_linear = linear


class MonotonicMLP(Network):
    r"""Monotonic MLP: :math:`h_{i+1} = a(h_i |W_{i+1}|^T + b_{i+1})` with the two-way ELU
    activation, so every :math:`\partial y_j / \partial x_i` is positive.

    Same arguments and parameter names (``"0"``, ``"2"``, ...) as ``zuko.nn.MonotonicMLP``;
    ``stack`` gives every layer a leading dimension of independent operators.

    Arguments:
        in_features: input size.
        out_features: output size.
        hidden_features: hidden sizes.
        bias: whether layers have biases.
        stack: the number of stacked networks :math:`S` (inputs :math:`(*, S, I)`).

    Example:
        >>> net = MonotonicMLP(3, 4, [16, 32])
        >>> params = net.init(torch.Generator().manual_seed(0))
        >>> J = torch.func.jacrev(lambda x: net.apply(params, x))(torch.randn(3))
        >>> bool((J > 0).all())
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: Sequence[int] = (64, 64),
        activation: Any = None,
        normalize: bool = False,
        bias: bool = True,
        stack: int | None = None,
    ) -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.hidden_features = hidden_sizes(hidden_features)
        self.bias = bool(bias)
        self.stack = None if stack is None else int(stack)
        self.names = tuple(str(2 * i) for i in range(len(self.hidden_features) + 1))
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
            x = linear(x, layer["weight"].abs(), layer.get("bias"))
            if i < last:
                x = two_way_elu(x)
        return x

    @staticmethod
    def signs(size: int, like: Tensor) -> Tensor:
        r"""The signs :math:`\sigma` of the two-way ELU: :math:`a(z) = \sigma \odot \mathrm{ELU}(\sigma \odot z)`."""

        first = (size + 1) // 2
        return torch.cat((like.new_ones(first), -like.new_ones(size - first)))


def fold_signs(
    first_weight: Tensor, first_bias: Tensor | None, weights: Sequence[Tensor], biases: Sequence[Tensor | None]
) -> tuple[Tensor, Tensor | None, list[Tensor], list[Tensor | None]]:
    r"""Folds the signs of the two-way ELU into absolute weights.

    With :math:`a(z) = \sigma \odot \mathrm{ELU}(\sigma \odot z)`, every hidden
    pre-activation is carried as :math:`v = \sigma \odot z`, so the network becomes
    plain ELUs between the linear maps :math:`\mathrm{diag}(\sigma') |W| \mathrm{diag}(\sigma)`.
    Returns the folded first layer (weight, bias) and the following layers.
    """

    def sig(n: int) -> Tensor:
        return MonotonicMLP.signs(n, first_weight)

    s1 = sig(first_weight.shape[-2])
    W0 = first_weight.abs() * s1[:, None]
    b0 = None if first_bias is None else first_bias * s1
    Ws, bs = [], []
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        W = W.abs() * sig(W.shape[-1])
        if i < len(weights) - 1:
            so = sig(W.shape[-2])
            W = W * so[:, None]
            b = None if b is None else b * so
        Ws.append(W)
        bs.append(b)
    return W0, b0, Ws, bs


def per_operator(x: Tensor, weights: Sequence[Tensor]) -> bool:
    r"""Whether stacked products of ``x`` with ``weights`` (:math:`S` operators, ``(S, O, I)``)
    are best made one operator at a time: while ``torch.compile`` traces a ``vmap`` that
    batches ``x`` but not the weights.

    There the batching rule of a stacked product (``bmm``) copies the weights once per
    sample, and its replacement, a product and a sum, is a reduction loop (16 ms for a
    NAF transform at N = 1024 against 1.5 ms of ``bmm``). One operator at a time, each
    product is a plain ``F.linear`` whose batching rule folds the vmapped dim into the
    GEMM's rows: the batched module's GEMM, without a copy.
    """

    return compiling_under_vmap(x) and all(W.dim() == 3 and W.shape[0] > 1 and not is_batchedtensor(W) for W in weights)


def per_operator_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r""":func:`~lazydist_functional.nn.linear` of a stacked weight, one operator at a time
    where :func:`per_operator` says so (the same values)."""

    if not per_operator(x, (weight,)) or (bias is not None and is_batchedtensor(bias)):
        return linear(x, weight, bias)
    # Each operator's rows are copied first: a strided slice would not fold into the GEMM's
    # rows (``matmul`` folds only inputs whose leading dims are contiguous), and the
    # product would fall back to a ``bmm`` on the weight expanded per sample.
    return torch.stack(
        [linear(x[..., i, :].clone(), weight[i], None if bias is None else bias[i]) for i in range(weight.shape[0])],
        dim=-2,
    )


def unit_output_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r""":func:`~lazydist_functional.nn.linear`; for one network's layer with one output unit
    (``weight`` :math:`(1, I)`) under ``torch.compile``, :math:`y = \sum_i x_i W_{0i} + b` as a
    product and a sum, which inductor fuses into the reduction that reads ``x``, where the GEMM
    would run as a matrix-vector product of its own (under a compiled ``vmap``, one per feature
    and transform: NAF's compiled vmap / batched 1.25 -> 1.06 at N = 256).

    Example:
        >>> x, W, b = torch.randn(4, 3), torch.randn(1, 3), torch.randn(1)
        >>> torch.allclose(unit_output_linear(x, W, b), torch.nn.functional.linear(x, W, b))
        True
    """

    if weight.dim() == 2 and weight.shape[0] == 1 and torch.compiler.is_compiling():
        y = (x * weight[0]).sum(-1, keepdim=True)
        return y if bias is None else y + bias
    return linear(x, weight, bias)


def _per_operator_network(
    fn: Any, v: Tensor, dv: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None]
) -> tuple[Tensor, Tensor]:
    r"""``fn`` (a folded network) applied to each operator of the stack alone (its one-network
    GEMMs), the outputs stacked: for :func:`per_operator`'s case. (``stack``, not ``cat``:
    under a compiled vmap the batching rule of ``cat`` specializes the vmapped size, one
    graph per batch size; ``stack``'s does not.)"""

    def part(i: int) -> tuple[Tensor, ...]:
        sl = slice(i, i + 1)
        return (v[..., sl, :], dv[..., sl, :] if dv.dim() >= 2 else dv, [W[sl] for W in weights],
                [None if b is None else b[sl] for b in biases])

    outs = [fn(*part(i)) for i in range(weights[0].shape[0])]
    return tuple(torch.stack([o[k].squeeze(-2) for o in outs], dim=-2) for k in (0, 1))  # type: ignore[return-value]


def _one_network(
    v: Tensor, dv: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None]
) -> tuple[bool, Tensor, Tensor, Sequence[Tensor], Sequence[Tensor | None]]:
    r"""Whether the stack holds one network (a root finder's group of one feature), and
    then the operands without the stack dimension: plain GEMMs instead of ``einsum``
    (whose permutes and reshapes cost more than a 1024 x 64 x 64 product)."""

    if v.shape[-2] != 1 or any(W.dim() != 3 or W.shape[0] != 1 for W in weights):
        return False, v, dv, weights, biases
    dv = dv.squeeze(-2) if dv.dim() >= 2 else dv
    return True, v.squeeze(-2), dv, [W[0] for W in weights], [None if b is None else b[0] for b in biases]


def folded_value_and_tangent(
    v: Tensor, dv: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None]
) -> tuple[Tensor, Tensor]:
    r"""Propagates folded pre-activations ``v`` and their tangent ``dv`` through ELUs and
    the folded layers of :func:`fold_signs` (analytic forward-mode derivative):
    :math:`v' = W \mathrm{ELU}(v) + b`, :math:`dv' = W (\mathrm{ELU}'(v) \odot dv)`."""

    if per_operator(v, weights) and not any(b is not None and is_batchedtensor(b) for b in biases):
        return _per_operator_network(folded_value_and_tangent, v, dv, weights, biases)
    single, v, dv, weights, biases = _one_network(v, dv, weights, biases)
    for W, b in zip(weights, biases, strict=True):
        e = torch.exp(torch.clamp(v, max=0.0))  # ELU'(v)
        # ELU(v) = (exp(min(v, 0)) - 1) + max(v, 0), exact for v > 0 (e - 1 = 0 there). No
        # ``where`` and no comparison: on CPU both are scalar loops (``where`` of a
        # 1024 x 64 block took as long as ~50 additions). The in-place sum is on a fresh tensor
        # that autograd does not keep.
        a = (e - 1).add_(torch.relu(v))
        v, dv = unit_output_linear(a, W, b), unit_output_linear(e * dv, W)
    return (v.unsqueeze(-2), dv.unsqueeze(-2)) if single else (v, dv)


def folded_value_and_tangent_inplace(
    v: Tensor, dv: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None]
) -> tuple[Tensor, Tensor]:
    r""":func:`folded_value_and_tangent` for tensors that need no gradient (a root
    finder's detached iterations), with its intermediates reused in place.

    ``v`` must be a fresh tensor of the caller's (it is overwritten) that is batched
    (``vmap``) wherever ``dv`` and the weights are. Per layer it makes two blocks of the
    hidden size besides the GEMMs' outputs instead of eight: on CPU each fresh block
    of a large batch is page-faulted in again (the allocator returns freed memory to
    the system), which cost more than the arithmetic.
    """

    single, v, dv, weights, biases = _one_network(v, dv, weights, biases)
    for W, b in zip(weights, biases, strict=True):
        e = v.clamp_max(0.0).exp_()  # ELU'(v)
        a = (e - 1).add_(v.clamp_min_(0.0))  # ELU(v) = (exp(min(v, 0)) - 1) + max(v, 0)
        v = linear(a, W, b)
        dv = linear(e.mul_(dv), W)
    return (v.unsqueeze(-2), dv.unsqueeze(-2)) if single else (v, dv)
