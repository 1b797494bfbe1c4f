r"""``zuko.flows.core``: the lazy building blocks (see :mod:`lazydist_functional.adapters.lazy`)."""

from ..lazy import (
    Flow,
    LazyComposedTransform,
    LazyDistribution,
    LazyInverse,
    LazyTransform,
    Unconditional,
    UnconditionalDistribution,
    UnconditionalTransform,
)

__all__ = [
    "Flow",
    "LazyComposedTransform",
    "LazyDistribution",
    "LazyInverse",
    "LazyTransform",
    "Unconditional",
    "UnconditionalDistribution",
    "UnconditionalTransform",
]
