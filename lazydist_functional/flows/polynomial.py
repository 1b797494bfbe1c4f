r"""Polynomial flows: sum-of-squares (SOSPF) and Bernstein (BPF)."""

from __future__ import annotations

__all__ = ["BPF", "SOSPF", "ShiftedSOSPTransform"]

from functools import partial
from typing import Any

from torch import Tensor
from torch.distributions import Transform

from ..transforms import AdditiveTransform, ComposedTransform
from ..transforms import BoundedBernsteinTransform, SOSPolynomialTransform

from ..spec import Spec
from .common import autoregressive_layers, standard_base, with_softclips
from .core import Flow
from .grouped import GroupedMaskedAutoregressiveTransform


def _grouped_layers(features: int, context: int, transforms: int, randperm: bool, **kwargs: Any) -> list[Spec]:
    r"""The autoregressive layers of SOSPF / BPF."""

    layer = partial(GroupedMaskedAutoregressiveTransform, features=features, context=context, **kwargs)
    return autoregressive_layers(layer, features, transforms, randperm)


def ShiftedSOSPTransform(a: Tensor, constant: Tensor, slope: float = 1e-3, iterations: int = 12) -> Transform:  # noqa: N802
    r"""A sum-of-squares polynomial transform followed by a shift (as in Zuko)."""

    return ComposedTransform(
        SOSPolynomialTransform(a, slope=slope, iterations=iterations),
        AdditiveTransform(constant),
    )


class SOSPF(Flow):
    r"""Sum-of-squares polynomial flow (SOSPF): autoregressive shifted SOS polynomial
    transforms with soft-clipping to :math:`[-11, 11]` between them.

    Same signature, defaults and parameter names as ``zuko.flows.SOSPF``, plus
    ``iterations`` (Newton iterations of the inverse, each one closed-form polynomial
    evaluation). Invertibility holds for features in :math:`[-10, 10]`.

    References:
        | Sum-of-Squares Polynomial Flow (Jaini et al., 2019)
        | https://arxiv.org/abs/1905.02325

    Example:
        >>> flow = SOSPF(3, 2, hidden_features=[16])
        >>> d = flow.apply(flow.init(), torch.randn(2))
        >>> x = d.sample()
        >>> torch.allclose(d.transform.inv(d.transform(x)), x, atol=1e-4)
        True
    """

    def __init__(self, features: int, context: int = 0, degree: int = 4, polynomials: int = 3,
                 slope: float = 1e-3, iterations: int = 12, transforms: int = 3,
                 randperm: bool = False, **kwargs: Any) -> None:
        layers = _grouped_layers(
            features,
            context,
            transforms,
            randperm,
            univariate=partial(ShiftedSOSPTransform, slope=slope, iterations=iterations),
            shapes=[(polynomials, degree + 1), ()],
            **kwargs,
        )
        super().__init__(with_softclips(layers), standard_base(features))
        self.features = int(features)


class BPF(Flow):
    r"""Bernstein polynomial flow (BPF): autoregressive bounded Bernstein polynomial
    transforms on :math:`[-5, 5]` (identity outside).

    Same signature, defaults and parameter names as ``zuko.flows.BPF``, plus
    ``iterations`` (Newton iterations of the inverse, started at :math:`x = y`).

    References:
        | Short-Term Density Forecasting of Low-Voltage Load using Bernstein-Polynomial
          Normalizing Flows (Arpogaus et al., 2022)
        | https://arxiv.org/abs/2204.13939

    Example:
        >>> flow = BPF(3, hidden_features=[16])
        >>> d = flow.apply(flow.init())
        >>> d.log_prob(d.sample((5,))).shape
        torch.Size([5])
    """

    def __init__(self, features: int, context: int = 0, degree: int = 16, iterations: int = 12,
                 transforms: int = 3, randperm: bool = False, **kwargs: Any) -> None:
        layers = _grouped_layers(
            features,
            context,
            transforms,
            randperm,
            univariate=partial(BoundedBernsteinTransform, iterations=iterations),
            shapes=[(degree + 1,)],
            **kwargs,
        )
        super().__init__(layers, standard_base(features))
        self.features = int(features)
