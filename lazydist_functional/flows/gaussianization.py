r"""Gaussianization flows (GF)."""

from __future__ import annotations

__all__ = ["GF"]

from functools import partial
from typing import Any

import torch

from ..spec import Spec
from ..transforms import GaussianizationTransform, RotationTransform
from .common import standard_base
from .core import Flow, UnconditionalTransform
from .elementwise import ElementWiseTransform


class GF(Flow):
    r"""Gaussianization flow (GF): element-wise Gaussianization transforms interleaved with
    learned rotations.

    Same signature, defaults and parameter names as ``zuko.flows.GF``, plus ``clip``,
    ``iterations``, ``nodes`` and ``polish`` for
    :class:`~lazydist_functional.transforms.GaussianizationTransform` (the inverse, i.e.
    sampling, of an unconditional GF starts from a table of ``nodes`` points per
    component and takes ``polish`` + 1 Newton steps; a conditional one takes
    ``iterations`` safeguarded steps per sample).
    The element-wise transforms are computed in log space on the side of the nearer
    tail, so they stay accurate and invertible in float32 where Zuko's ``erf``/``erfinv``
    evaluation saturates. The default ``clip=1e-6`` is Zuko's formula (same log-densities
    as Zuko in float64); ``clip=0`` makes each element-wise transform an exact bijection
    of the reals (different densities in the far tails).

    References:
        | Gaussianization Flows (Meng et al., 2020)
        | https://arxiv.org/abs/2003.01941

    Example:
        >>> flow = GF(3, 2, hidden_features=[16])
        >>> d = flow.apply(flow.init(), torch.randn(2))
        >>> d.log_prob(d.sample((4,))).shape
        torch.Size([4])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, components: int = 8,
                 clip: float = 1e-6, iterations: int = 12, nodes: int = 16, polish: int = 0,
                 **kwargs: Any) -> None:
        univariate = partial(GaussianizationTransform, clip=clip, iterations=iterations, nodes=nodes, polish=polish)
        specs: list[Spec] = []
        for i in range(transforms):
            if i > 0:
                specs.append(UnconditionalTransform(RotationTransform, A=torch.randn(features, features)))
            specs.append(ElementWiseTransform(
                features=features,
                context=context,
                univariate=univariate,
                shapes=[(components,), (components,)],
                **kwargs,
            ))
        super().__init__(specs, standard_base(features))
        self.features = int(features)
