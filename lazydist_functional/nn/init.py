r"""Parameter and state initialization shared by every spec: the ``device="meta"``
branch (shapes only, no data) and the uniform fan-in initialization of linear layers."""

from __future__ import annotations

__all__ = ["is_meta", "on_device", "uniform"]

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def is_meta(device: torch.device | str | None) -> bool:
    r"""Whether ``device`` is the ``meta`` device (tensors without data)."""

    return device is not None and torch.device(device).type == "meta"


def on_device(
    make: Callable[[], Tensor],
    shape: Sequence[int],
    dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> Tensor:
    r"""``make()`` moved to ``device``, or an empty tensor of ``shape`` and ``dtype`` on
    the ``meta`` device without calling ``make`` (how specs report their shapes).

    Example:
        >>> on_device(lambda: torch.ones(2, 3), (2, 3), torch.float32, "meta").device
        device(type='meta')
        >>> on_device(lambda: torch.ones(2), (2,), torch.float32, None)
        tensor([1., 1.])
    """

    if is_meta(device):
        return torch.empty(tuple(shape), dtype=dtype or torch.get_default_dtype(), device="meta")
    value = make()
    return value if device is None else value.to(device)


def uniform(
    shape: Sequence[int],
    bound: float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""A tensor drawn from :math:`\mathcal{U}(-b, b)` (drawn on the CPU with ``generator``,
    then moved, so a seed gives the same values on every device).

    Example:
        >>> w = uniform((3, 2), 0.5, torch.Generator().manual_seed(0))
        >>> bool((w.abs() <= 0.5).all())
        True
    """

    dtype = dtype or torch.get_default_dtype()

    def draw() -> Tensor:
        return (2 * torch.rand(tuple(shape), generator=generator, dtype=dtype) - 1) * bound

    return on_device(draw, shape, dtype, device)
