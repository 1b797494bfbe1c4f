r"""Flow specs with Zuko 1.6's names, signatures and defaults (pure ``init``/``apply``)."""

from .autoregressive import MAF, MaskedAutoregressiveTransform
from .core import Flow, LazyComposedTransform, LazyInverse, UnconditionalDistribution, UnconditionalTransform
from .coupling import NICE, GeneralCouplingTransform, RealNVP
from .spline import NSF

__all__ = [
    "Flow",
    "GeneralCouplingTransform",
    "LazyComposedTransform",
    "LazyInverse",
    "MAF",
    "MaskedAutoregressiveTransform",
    "NICE",
    "NSF",
    "RealNVP",
    "UnconditionalDistribution",
    "UnconditionalTransform",
]
