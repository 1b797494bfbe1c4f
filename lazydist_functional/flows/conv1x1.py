r"""Lazy invertible 1x1 convolution (Glow), LU-parametrized."""

from __future__ import annotations

__all__ = ["InvertibleConv1x1"]

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..nn import on_device
from ..spec import Spec
from ..transforms.conv1x1 import InvertibleConv1x1Transform, lu_rotation


class InvertibleConv1x1(Spec):
    r"""Lazy :class:`~lazydist_functional.transforms.conv1x1.InvertibleConv1x1Transform` on
    images with ``channels`` channels, initialized (as Glow) to a random rotation drawn at
    construction (global RNG, like random orders): :math:`W = P L U`.

    The permutation :math:`P` (``perm``) and the signs of :math:`U`'s diagonal (``sign``) are
    state; the strict triangles ``lower``, ``upper`` and the log-magnitudes ``log_scale`` of
    the diagonal are trainable, so :math:`W` stays invertible.

    Example:
        >>> layer = InvertibleConv1x1(4)
        >>> sorted(layer.init()), sorted(layer.init_state())
        (['log_scale', 'lower', 'upper'], ['perm', 'sign'])
        >>> f = layer.apply(layer.init())
        >>> x = torch.randn(4, 3, 3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __init__(self, channels: int) -> None:
        self.channels = int(channels)
        P, lower, upper, log_scale, sign = lu_rotation(self.channels, dtype=torch.float64)
        self._initial = {"lower": lower, "upper": upper, "log_scale": log_scale}
        self._state = {"perm": P, "sign": sign}

    @staticmethod
    def _copy(tensors: dict[str, Tensor], dtype, device) -> dict[str, Tensor]:
        dtype = dtype or torch.get_default_dtype()
        return {k: on_device(lambda v=v: v.to(dtype, copy=True), v.shape, dtype, device) for k, v in tensors.items()}

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        return self._copy(self._initial, dtype, device)

    def init_state(self, *, dtype=None, device=None) -> dict[str, Any]:
        return self._copy(self._state, dtype, device)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> InvertibleConv1x1Transform:
        return InvertibleConv1x1Transform(
            state["perm"], params["lower"], params["upper"], params["log_scale"], state["sign"]
        )
