r"""Pure linear layers: ``y = x W^T + b``, with optional leading batch dims on ``W``."""

from __future__ import annotations

__all__ = ["linear", "init_linear"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r""":math:`y = x W^T + b`.

    If ``weight`` has leading batch dimensions (stacked parameter sets), they
    broadcast against the batch dimensions of ``x``.
    """

    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    y = torch.matmul(weight, x.unsqueeze(-1)).squeeze(-1)
    return y if bias is None else y + bias


def init_linear(
    in_features: int,
    out_features: int,
    bias: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    r"""Weights and bias drawn from :math:`\mathcal{U}(-1/\sqrt{n_\text{in}}, 1/\sqrt{n_\text{in}})`
    (the PyTorch ``nn.Linear`` default scale)."""

    bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
    dtype = dtype or torch.get_default_dtype()

    def uniform(*shape: int) -> Tensor:
        if str(device) == "meta":
            return torch.empty(*shape, dtype=dtype, device="meta")
        u = torch.rand(*shape, generator=generator, dtype=dtype)
        return ((2 * u - 1) * bound).to(device)

    params = {"weight": uniform(out_features, in_features)}
    if bias:
        params["bias"] = uniform(out_features)
    return params
