r"""``zuko.transforms``: the same public names as Zuko 1.6's module.

The transforms are this library's pure pytree transforms. As in Zuko, the module also
re-exports torch's transforms (``AffineTransform``, ``ComposeTransform``, ...), the
names it imports (``Transform``, ``constraints``, ...) and the utilities it uses
(:func:`~lazydist_functional.adapters.utils.odeint`, ``bisection``,
``gauss_legendre``, ``broadcast``), so code reading them from here keeps working.
``tests/test_transforms.py`` compares the name set with ``dir(zuko.transforms)``.
"""

# Zuko's own imports, re-exported so that the namespaces match name for name.
import math  # noqa: F401
from collections.abc import Callable, Iterable  # noqa: F401
from textwrap import indent  # noqa: F401
from typing import Any  # noqa: F401

import torch
import torch.nn.functional as F  # noqa: F401, N812
from torch import BoolTensor, LongTensor, Size, Tensor  # noqa: F401
from torch.distributions import Distribution, Transform, constraints  # noqa: F401
from torch.distributions.transforms import *  # noqa: F401, F403

from ..transforms import (  # noqa: F401
    AdditiveTransform,
    AutoregressiveTransform,
    BernsteinTransform,
    BoundedBernsteinTransform,
    CircularShiftTransform,
    ComposedTransform,
    CosTransform,
    CouplingTransform,
    DependentTransform,
    FreeFormJacobianTransform,
    GaussianizationTransform,
    IdentityTransform,
    LULinearTransform,
    MonotonicAffineTransform,
    MonotonicRQSTransform,
    MonotonicTransform,
    PermutationTransform,
    RotationTransform,
    SignedPowerTransform,
    SinTransform,
    SoftclipTransform,
    SOSPolynomialTransform,
    UnconstrainedMonotonicTransform,
)
from .utils import bisection, broadcast, gauss_legendre, odeint  # noqa: F401

__all__ = [
    "AdditiveTransform",
    "AutoregressiveTransform",
    "BernsteinTransform",
    "BoundedBernsteinTransform",
    "CircularShiftTransform",
    "ComposedTransform",
    "CosTransform",
    "CouplingTransform",
    "DependentTransform",
    "FreeFormJacobianTransform",
    "GaussianizationTransform",
    "IdentityTransform",
    "LULinearTransform",
    "MonotonicAffineTransform",
    "MonotonicRQSTransform",
    "MonotonicTransform",
    "PermutationTransform",
    "RotationTransform",
    "SOSPolynomialTransform",
    "SignedPowerTransform",
    "SinTransform",
    "SoftclipTransform",
    "UnconstrainedMonotonicTransform",
]
