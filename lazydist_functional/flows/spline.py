r"""Neural spline flows."""

from __future__ import annotations

__all__ = ["NSF"]

from functools import partial
from typing import Any

from ..transforms import MonotonicRQSTransform
from .autoregressive import MAF


class NSF(MAF):
    r"""Neural spline flow: autoregressive monotonic rational-quadratic splines.

    Splines act on :math:`[-5, 5]` and are the identity outside; standardize
    features first. ``passes=2`` gives coupling transforms. Same signature and
    defaults as ``zuko.flows.NSF``.

    References:
        | Neural Spline Flows (Durkan et al., 2019)
        | https://arxiv.org/abs/1906.04032

    Arguments:
        features: the number of features.
        context: the number of context features.
        bins: the number of bins :math:`K`.
        slope: the minimum slope of the splines.
        kwargs: passed to :class:`~lazydist_functional.flows.MAF`.

    Example:
        >>> flow = NSF(2, 1)
        >>> d = flow.apply(flow.init(), torch.randn(1))
        >>> x = d.rsample((4,))
        >>> x.shape
        torch.Size([4, 2])
    """

    def __init__(self, features: int, context: int = 0, bins: int = 8, slope: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(
            features=features,
            context=context,
            univariate=partial(MonotonicRQSTransform, slope=slope),
            shapes=[(bins,), (bins,), (bins - 1,)],
            **kwargs,
        )
