r"""Monotonic univariate transforms inverted by root finding, one file per family:
the base (:mod:`.base`), Bernstein polynomials, Gaussianization, quadrature (UMNN)
and sum-of-squares polynomials."""

from .base import MonotonicTransform
from .bernstein import BernsteinTransform, BoundedBernsteinTransform
from .gaussianization import GaussianizationTransform
from .quadrature import UnconstrainedMonotonicTransform, gauss_legendre_nodes, gauss_legendre_rule
from .sos import SOSPolynomialTransform

__all__ = [
    "BernsteinTransform",
    "BoundedBernsteinTransform",
    "GaussianizationTransform",
    "MonotonicTransform",
    "SOSPolynomialTransform",
    "UnconstrainedMonotonicTransform",
    "gauss_legendre_nodes",
    "gauss_legendre_rule",
]
