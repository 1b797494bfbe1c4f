r"""Distributions: :class:`torch.distributions.Distribution` subclasses that are pytrees."""

from .base import FunctionalDistribution
from .flow import NormalizingFlow
from .normal import DiagNormal
from .uniform import BoxUniform

__all__ = ["FunctionalDistribution", "NormalizingFlow", "DiagNormal", "BoxUniform"]

from .mixture import Mixture, MultivariateNormal  # noqa: E402

__all__ += ["Mixture", "MultivariateNormal"]
from .composite import (  # noqa: E402
    GeneralizedNormal,
    Joint,
    Maximum,
    Minimum,
    Sort,
    TopK,
    TransformedUniform,
    Truncated,
)

__all__ += ["GeneralizedNormal", "Joint", "Maximum", "Minimum", "Sort", "TopK", "TransformedUniform", "Truncated"]
