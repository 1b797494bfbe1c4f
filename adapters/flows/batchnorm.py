r"""Batch normalization between flow layers as a module (not in Zuko 1.6).

``MAF(..., batch_norm=True)``, ``NSF(..., batch_norm=True)`` and
``RealNVP(..., batch_norm=True)`` insert these layers; as ``nn.BatchNorm1d``, in
``train()`` mode they normalize with the statistics of the batch being transformed and
update their ``running_mean`` / ``running_var`` buffers, in ``eval()`` mode they use them.
"""

from __future__ import annotations

__all__ = ["BatchNormTransform"]

from typing import Any

from ... import flows as _core
from ..lazy import SpecTransform
from ..module import module_class


@module_class(_core.BatchNormTransform)
class BatchNormTransform(SpecTransform):
    r"""Module of :class:`lazydist_functional.flows.BatchNormTransform` (same arguments).

    Example:
        >>> from lazydist_functional.adapters.flows import MAF
        >>> flow = MAF(2, transforms=2, batch_norm=True)
        >>> loss = -flow().log_prob(3 + torch.randn(64, 2)).mean()  # train mode: buffers updated
        >>> bool((flow.transform.transforms[1].running_mean > 0).all())
        True
    """

    def __init__(self, features: int, context: int = 0, **kwargs: Any) -> None:
        super().__init__(_core.BatchNormTransform(features, context, **kwargs))
