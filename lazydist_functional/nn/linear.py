r"""Pure linear layers: ``y = x W^T + b``, with optional leading (stacked) dims on ``W``."""

from __future__ import annotations

__all__ = ["init_linear", "linear"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C._functorch import _add_batch_dim, _unwrap_batched, is_batchedtensor, maybe_current_level, maybe_get_level

from .gaussian import GaussianWeight
from .init import uniform


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    r""":math:`y = x (W \odot M)^T + b`.

    A weight with leading dimensions (:math:`S` stacked operators, or stacked parameter
    sets) maps inputs :math:`(*, S, I)` to :math:`(*, S, O)`, broadcasting the leading
    dimensions. A :class:`~lazydist_functional.nn.gaussian.GaussianWeight` is evaluated
    with the local reparameterization trick.

    Example:
        >>> W = torch.randn(4, 2, 3)  # 4 stacked operators
        >>> linear(torch.randn(5, 4, 3), W).shape
        torch.Size([5, 4, 2])
    """

    if isinstance(weight, GaussianWeight):
        return weight.local_linear(x, bias, mask)
    if mask is not None:
        weight = weight * mask
    level = _vmapped_level(x, weight, bias)
    if level is not None:
        return _linear_folded(x, weight, bias, level)
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    y = _stacked(x, weight)
    return y if bias is None else y + bias


def _vmapped_level(x: Tensor, weight: Tensor, bias: Tensor | None) -> int | None:
    r"""The level of the innermost ``vmap`` when ``x`` alone is batched by it (shared
    ``weight`` and ``bias``) and has at least the weight's stacked dims (so that the
    vmapped dim, moved first, stays out of their broadcast), else ``None`` (also while
    ``torch.compile`` traces: the compiler batches and fuses the plain call itself)."""

    if torch.compiler.is_compiling() or not is_batchedtensor(x) or x.dim() < weight.dim() - 1:
        return None
    level = maybe_get_level(x)
    if level != maybe_current_level():
        return None
    if any(t is not None and is_batchedtensor(t) and maybe_get_level(t) == level for t in (weight, bias)):
        return None
    return level


def _linear_folded(x: Tensor, weight: Tensor, bias: Tensor | None, level: int) -> Tensor:
    r""":func:`linear` of a ``vmap``-batched ``x`` with a shared weight, run on the
    physical tensor: the batched module's call.

    Under ``vmap``, ``F.linear`` of a per-sample vector decomposes into
    ``unsqueeze, mm, view, squeeze, add`` (five batched operations and a separate pass
    for the bias), and a stacked weight falls back to one GEMM per operator. The vmapped
    dimension is a row dimension of the GEMM, so the call is made on the physical tensor
    (vmapped dim moved first) and wrapped back: one ``addmm`` (or one batched matmul),
    as in the batched module. Autograd and outer transforms see the same operations on
    the unwrapped tensor.
    """

    inner, bdim = _unwrap_batched(x, level)
    if bdim != 0:
        inner = inner.movedim(bdim, 0)
    return _add_batch_dim(linear(inner, weight, bias), 0, level)


def _stacked(x: Tensor, weight: Tensor) -> Tensor:
    r""":math:`y_{\dots s} = W_{\dots s} x_{\dots s}` for a weight with leading dims.

    ``einsum`` contracts the stacked dims as ``bmm`` batches (``matmul`` would first
    expand the weight to x's batch shape, a copy per sample). Under ``vmap`` over ``x``
    alone the call is made on the physical tensor first (:func:`_linear_folded`), so the
    batching rule of ``bmm``, which would make that copy, is not reached.
    """

    if torch.compiler.is_compiling() and is_batchedtensor(x) and not is_batchedtensor(weight):
        # Under a compiled ``vmap`` the batching rule of the contraction copies the weight
        # per sample; a product and a sum, which inductor fuses into one reduction, does not.
        return (weight * x.unsqueeze(-2)).sum(-1)
    return torch.einsum("...ij,...j->...i", weight, x)


def init_linear(
    in_features: int,
    out_features: int,
    bias: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    stack: int | None = None,
) -> dict[str, Tensor]:
    r"""Weights (``stack`` × out × in) and bias drawn from
    :math:`\mathcal{U}(-1/\sqrt{n_\text{in}}, 1/\sqrt{n_\text{in}})` (``nn.Linear``'s scale).

    Example:
        >>> sorted((k, tuple(v.shape)) for k, v in init_linear(3, 2, stack=4).items())
        [('bias', (4, 2)), ('weight', (4, 2, 3))]
    """

    bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
    lead = () if stack is None else (int(stack),)
    params = {"weight": uniform((*lead, out_features, in_features), bound, generator, dtype, device)}
    if bias:
        params["bias"] = uniform((*lead, out_features), bound, generator, dtype, device)
    return params
