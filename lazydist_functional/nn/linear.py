r"""Pure linear layers: ``y = x W^T + b``, with optional leading (stacked) dims on ``W``."""

from __future__ import annotations

__all__ = ["init_linear", "linear"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C._functorch import is_batchedtensor

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
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    y = _stacked(x, weight)
    return y if bias is None else y + bias


def _stacked(x: Tensor, weight: Tensor) -> Tensor:
    r""":math:`y_{\dots s} = W_{\dots s} x_{\dots s}` for a weight with leading dims.

    ``einsum`` contracts the stacked dims as ``bmm`` batches (``matmul`` would first
    expand the weight to x's batch shape, a copy per sample). Under ``vmap`` over ``x``
    alone, ``einsum``/``bmm``'s batching rule makes that copy too, so :math:`S` stacked
    operators are applied as :math:`S` ``F.linear``\ s, whose batching rule folds the
    vmapped dim into the rows (one GEMM each, no copy).
    """

    if weight.dim() == 3 and is_batchedtensor(x) and not is_batchedtensor(weight):
        return torch.stack([F.linear(xs, w) for xs, w in zip(x.unbind(-2), weight.unbind(0), strict=True)], dim=-2)
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
