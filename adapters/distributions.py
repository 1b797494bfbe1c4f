r"""``zuko.distributions``: torch's distributions and this library's pytree distributions.

As in Zuko 1.6, the namespace re-exports :mod:`torch.distributions` (``Independent``,
``Normal``, ``MultivariateNormal``, ... are torch's own classes) and adds the
distributions Zuko defines; those are this library's, which subclass the same torch
bases (``DiagNormal`` is an ``Independent``) and are pytrees.
"""

# Zuko's namespace: the names it imports are public here too (hence the F401s)
import math  # noqa: F401
from textwrap import indent  # noqa: F401

import torch  # noqa: F401
from torch import Size, Tensor  # noqa: F401
from torch.distributions import *  # noqa: F403
from torch.distributions import (  # noqa: F401
    Categorical,
    Distribution,
    Independent,
    Normal,
    Transform,
    Uniform,
    constraints,
)

from ..distributions import (
    BoxUniform,
    DiagNormal,
    GeneralizedNormal,
    Joint,
    Maximum,
    Minimum,
    Mixture,
    NormalizingFlow,
    Sort,
    TopK,
    TransformedUniform,
    Truncated,
)

__all__ = [
    "BoxUniform",
    "DiagNormal",
    "GeneralizedNormal",
    "Joint",
    "Maximum",
    "Minimum",
    "Mixture",
    "NormalizingFlow",
    "Sort",
    "TopK",
    "TransformedUniform",
    "Truncated",
]
