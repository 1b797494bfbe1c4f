r"""Lazy ActNorm: per-channel affine layer of image flows with data-dependent initialization."""

from __future__ import annotations

__all__ = ["ActNorm"]

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..nn import on_device
from ..spec import Spec
from ..transforms.actnorm import ActNormTransform, actnorm_statistics


class ActNorm(Spec):
    r"""Lazy :class:`~lazydist_functional.transforms.actnorm.ActNormTransform` on images with
    ``channels`` channels; parameters ``shift`` and ``log_scale``, both :math:`(C,)`, zero
    (the identity) until :meth:`data_init`.

    Example:
        >>> layer = ActNorm(2)
        >>> x = 5 + 3 * torch.randn(100, 2, 4, 4)
        >>> params = layer.data_init(layer.init(), x)  # new params, nothing mutated
        >>> y = layer.apply(params)(x)
        >>> torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-3)
        True
    """

    def __init__(self, channels: int) -> None:
        self.channels = int(channels)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        dtype = dtype or torch.get_default_dtype()
        C = self.channels
        return {k: on_device(lambda: torch.zeros(C, dtype=dtype), (C,), dtype, device) for k in ("shift", "log_scale")}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> ActNormTransform:
        return ActNormTransform(params["shift"], params["log_scale"])

    def data_init(self, params: Mapping[str, Any], x: Tensor) -> dict[str, Any]:
        r"""Glow's data-dependent initialization: new parameters that map the batch ``x``
        :math:`(*, C, H, W)` to zero mean and unit variance per channel
        (:func:`~lazydist_functional.transforms.actnorm.actnorm_statistics`)."""

        shift, log_scale = actnorm_statistics(x, params["shift"])
        return {"shift": shift, "log_scale": log_scale}
