r"""What the image transforms share: the input check and the batch shape of their log-determinants.

Images have shape :math:`(*, C, H, W)`: the three rightmost dimensions form the event.
"""

from __future__ import annotations

__all__ = ["check_image", "image_batch", "image_constraint"]

import torch
from torch import Tensor
from torch.distributions import Transform, constraints

from ..checks import InputTypeError, ShapeError, check_dtype
from ..pytree import first_float

#: The domain (and codomain) of the image transforms: three event dimensions.
image_constraint = constraints.independent(constraints.real, 3)


def check_image(t: Transform, x: Tensor, channels: int | None = None) -> None:
    r"""Checks that ``x`` is an image batch :math:`(*, C, H, W)` with ``channels`` channels (if
    given) and the dtype of ``t``'s parameters (shapes and dtypes only).

    Example:
        >>> from lazydist_functional.transforms import SqueezeTransform
        >>> check_image(SqueezeTransform(), torch.zeros(5, 4), 3)
        Traceback (most recent call last):
          ...
        lazydist_functional.checks.ShapeError: the input of SqueezeTransform should be an image of shape (*, 3, H, W), got (5, 4)
    """

    what = f"the input of {type(t).__name__}"
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{what} should be a tensor, got {type(x).__name__}")
    if x.dim() < 3 or (channels is not None and x.shape[-3] != channels):
        expected = "C" if channels is None else str(channels)
        raise ShapeError(f"{what} should be an image of shape (*, {expected}, H, W), got {tuple(x.shape)}")
    ref = first_float(t)
    if ref is not None:
        check_dtype(what, x, ref.dtype)


def image_batch(x: Tensor, ladj: Tensor) -> Tensor:
    r"""``ladj`` (of the parameters' batch shape) broadcast to the batch shape of the image
    ``x`` :math:`(*, C, H, W)`.

    Example:
        >>> image_batch(torch.zeros(5, 2, 3, 3), torch.tensor(1.0)).shape
        torch.Size([5])
    """

    return ladj.expand(torch.broadcast_shapes(x.shape[:-3], ladj.shape))
