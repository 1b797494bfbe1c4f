r"""Transforms: forward, inverse, ``call_and_ladj``; all pytrees and ``torch.func``-safe."""

from .affine import AdditiveTransform, MonotonicAffineTransform
from .autoregressive import AutoregressiveTransform, CouplingTransform
from .base import ComposedTransform, DependentTransform, FunctionalTransform, InverseTransform
from .permutation import PermutationTransform
from .spline import MonotonicRQSTransform

__all__ = [
    "AdditiveTransform",
    "AutoregressiveTransform",
    "ComposedTransform",
    "CouplingTransform",
    "DependentTransform",
    "FunctionalTransform",
    "InverseTransform",
    "MonotonicAffineTransform",
    "MonotonicRQSTransform",
    "PermutationTransform",
]
