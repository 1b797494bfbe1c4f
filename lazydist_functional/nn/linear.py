r"""Pure linear layers: ``y = x W^T + b``, with optional leading (stacked) dims on ``W``."""

from __future__ import annotations

__all__ = ["init_linear", "linear"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C._functorch import _add_batch_dim, is_batchedtensor

from ..functorch_levels import batching_level, compiling_under_vmap, is_batched_at, physical
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
    r"""The level of the innermost ``vmap`` when it batches the call and the call can be
    made on the physical tensors (:func:`_linear_folded`), else ``None``.

    Foldable: ``x`` alone batched with at least the weight's stacked dims (so that the
    vmapped dim, moved first, stays out of their broadcast), or a batched plain
    (out × in) weight with any of ``x`` and ``bias``. Not while ``torch.compile``
    traces: the compiler batches and fuses the plain call itself.
    """

    level = batching_level(x, weight, bias)
    if level is None:
        return None
    x_b, w_b, b_b = (is_batched_at(t, level) for t in (x, weight, bias))
    if w_b:
        return level if weight.dim() == 2 and x.dim() >= 1 else None
    if x_b and not b_b and x.dim() >= weight.dim() - 1:
        return level
    return None


def _linear_folded(x: Tensor, weight: Tensor, bias: Tensor | None, level: int) -> Tensor:
    r""":func:`linear` under the ``vmap`` of ``level``, run on the physical tensors: the
    batched module's call.

    Under ``vmap``, ``F.linear`` of a per-sample vector decomposes into
    ``unsqueeze, mm, view, squeeze, add`` (five batched operations and a separate pass
    for the bias), and a stacked weight falls back to one GEMM per operator. The call is
    made on the physical tensors (vmapped dim moved first) and wrapped back:

    * shared weight: the vmapped dim is a row dim of the GEMM, one ``addmm`` (or one
      batched matmul) as in the batched module;
    * batched weight :math:`W_k` (an ensemble, per-sample parameters), ``x`` batched or
      shared: one ``baddbmm`` :math:`y_k^T = b_k + W_k x_k^T`, vmapped dim first (a shared
      ``x`` is an expanded view, not a copy). Computed as :math:`W_k x_k^T`, the
      gradient of :math:`W_k` comes out in :math:`W_k`'s own (contiguous) layout, which
      the optimizer's element-wise passes read fastest.

    Autograd and outer transforms see the same operations on the unwrapped tensors, so
    ``grad(vmap(f))`` differentiates plain GEMMs instead of batching rules.
    """

    if not is_batched_at(weight, level):
        return _add_batch_dim(linear(physical(x, level), weight, bias), 0, level)
    w = physical(weight, level)  # (B, out, in)
    b = physical(bias, level) if is_batched_at(bias, level) else bias
    n, o, i = w.shape
    if is_batched_at(x, level):
        xp = physical(x, level)  # (B, *rows, in)
        rows = xp.reshape(n, -1, i)
    else:  # shared x, read by every member (an expanded view: no copy)
        xp = x.expand(n, *x.shape)
        rows = x.reshape(1, -1, i).expand(n, -1, i)
    cols = rows.transpose(1, 2)  # y_k^T = W_k x_k^T: W's gradient comes out in W's own layout
    yt = torch.bmm(w, cols) if b is None else torch.baddbmm(b.expand(n, o).unsqueeze(2), w, cols)
    y = yt.transpose(1, 2)
    return _add_batch_dim(y.reshape(*xp.shape[:-1], o), 0, level)


def _stacked(x: Tensor, weight: Tensor) -> Tensor:
    r""":math:`y_{\dots s} = W_{\dots s} x_{\dots s}` for a weight with leading dims.

    ``einsum`` contracts the stacked dims as ``bmm`` batches (``matmul`` would first
    expand the weight to x's batch shape, a copy per sample). Under ``vmap`` over ``x``
    alone the call is made on the physical tensor first (:func:`_linear_folded`), so the
    batching rule of ``bmm``, which would make that copy, is not reached.
    """

    if compiling_under_vmap(x) and not is_batchedtensor(weight):
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
