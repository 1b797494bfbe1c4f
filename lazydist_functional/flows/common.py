r"""Pieces shared by the flow families: the standard base, feature orders, soft-clipping
between layers, and the builder of a stack of autoregressive layers.

Every flow file imports from here (and from :mod:`.core`); no flow family imports
another, so the package has no cycle.
"""

from __future__ import annotations

__all__ = ["FlowConfigError", "at_least", "autoregressive_layers", "feature_orders", "standard_base", "with_softclips"]

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..checks import ConfigError
from ..distributions import DiagNormal
from ..spec import Spec
from ..transforms.softclip import SoftclipTransform
from .core import UnconditionalDistribution, UnconditionalTransform


class FlowConfigError(ConfigError):
    r"""An invalid flow configuration (an ``adjacency`` with a cycle, a wrong ``order``, ...).

    Also an :class:`AssertionError`, the type Zuko raises for these, so code written for
    Zuko that catches it keeps working.
    """


def at_least(owner: str, name: str, value: int, minimum: int = 1) -> int:
    r"""``value`` as an ``int``, or a :class:`FlowConfigError` naming ``owner``'s argument ``name``
    if it is below ``minimum``.

    Example:
        >>> at_least("GMM", "components", 0)
        Traceback (most recent call last):
        ...
        lazydist_functional.flows.common.FlowConfigError: GMM needs components >= 1, got 0
    """

    if int(value) < minimum:
        raise FlowConfigError(f"{owner} needs {name} >= {minimum}, got {value}")
    return int(value)


def standard_base(features: int) -> UnconditionalDistribution:
    r""":math:`\mathcal{N}(0, I)` as a buffered unconditional lazy distribution.

    Example:
        >>> base = standard_base(2)
        >>> base.apply(base.init()).event_shape
        torch.Size([2])
    """

    return UnconditionalDistribution(DiagNormal, loc=torch.zeros(features), scale=torch.ones(features), buffer=True)


def feature_orders(features: int, transforms: int, randperm: bool = False) -> list[Tensor]:
    r"""Orders of successive autoregressive layers: ascending and descending in turn, or
    drawn at random (global RNG, at construction) with ``randperm=True``.

    Example:
        >>> [o.tolist() for o in feature_orders(3, 2)]
        [[0, 1, 2], [2, 1, 0]]
    """

    if randperm:
        return [torch.randperm(features) for _ in range(transforms)]
    ascending = torch.arange(features)
    return [ascending if i % 2 == 0 else torch.flipud(ascending) for i in range(transforms)]


def autoregressive_layers(layer: Callable[..., Spec], features: int, transforms: int, randperm: bool) -> list[Spec]:
    r"""``[layer(order=o) for o in feature_orders(...)]``: the layers of MAF, NAF, UNAF, SOSPF, BPF.

    Example:
        >>> from lazydist_functional.flows import MaskedAutoregressiveTransform
        >>> from functools import partial
        >>> layers = autoregressive_layers(partial(MaskedAutoregressiveTransform, 3), 3, 2, False)
        >>> [t.order.tolist() for t in layers]
        [[0, 1, 2], [2, 1, 0]]
    """

    return [layer(order=order) for order in feature_orders(features, transforms, randperm)]


def with_softclips(transforms: Sequence[Spec], bound: float = 11.0) -> list[Spec]:
    r"""Inserts a soft-clipping transform :math:`x \mapsto x / (1 + |x| / B)` between
    successive layers (Zuko's NAF, UNAF and SOSPF), keeping inputs of each monotonic
    layer in :math:`(-B, B)`.

    Example:
        >>> from lazydist_functional.flows import MaskedAutoregressiveTransform
        >>> layers = with_softclips([MaskedAutoregressiveTransform(2), MaskedAutoregressiveTransform(2)])
        >>> [type(t).__name__ for t in layers]
        ['MaskedAutoregressiveTransform', 'UnconditionalTransform', 'MaskedAutoregressiveTransform']
    """

    out: list[Spec] = []
    for i, t in enumerate(transforms):
        if i > 0:
            out.append(UnconditionalTransform(SoftclipTransform, bound=bound))
        out.append(t)
    return out
