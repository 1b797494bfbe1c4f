r"""Transforms: forward, inverse, ``call_and_ladj``; all pytrees and ``torch.func``-safe."""

from .affine import AdditiveTransform, MonotonicAffineTransform
from .autoregressive import AutoregressiveTransform, CouplingTransform
from .base import ComposedTransform, DependentTransform, FunctionalTransform, InverseTransform, take
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
    "take",
]

from .monotonic import (  # noqa: E402
    BernsteinTransform,
    BoundedBernsteinTransform,
    GaussianizationTransform,
    MonotonicTransform,
    SOSPolynomialTransform,
    UnconstrainedMonotonicTransform,
    gauss_legendre_nodes,
)
from .softclip import SoftclipTransform, soft_bound  # noqa: E402

__all__ += [
    "BernsteinTransform",
    "BoundedBernsteinTransform",
    "GaussianizationTransform",
    "MonotonicTransform",
    "SOSPolynomialTransform",
    "SoftclipTransform",
    "UnconstrainedMonotonicTransform",
    "gauss_legendre_nodes",
    "soft_bound",
]

from .continuous import FreeFormJacobianTransform  # noqa: E402

__all__ += ["FreeFormJacobianTransform"]
from .rotation import RotationTransform  # noqa: E402

__all__ += ["RotationTransform"]
from .elementwise import (  # noqa: E402
    CircularShiftTransform,
    CosTransform,
    IdentityTransform,
    SignedPowerTransform,
    SinTransform,
)
from .linear import LULinearTransform  # noqa: E402

__all__ += [
    "CircularShiftTransform",
    "CosTransform",
    "IdentityTransform",
    "LULinearTransform",
    "SignedPowerTransform",
    "SinTransform",
]
from .actnorm import ActNormTransform  # noqa: E402
from .channel_coupling import ChannelCouplingTransform  # noqa: E402
from .conv1x1 import InvertibleConv1x1Transform  # noqa: E402
from .multiscale import MultiScaleTransform  # noqa: E402
from .squeeze import SqueezeTransform  # noqa: E402

__all__ += [
    "ActNormTransform",
    "ChannelCouplingTransform",
    "InvertibleConv1x1Transform",
    "MultiScaleTransform",
    "SqueezeTransform",
]
from .planar import PlanarTransform  # noqa: E402
from .radial import RadialTransform  # noqa: E402
from .sylvester import SylvesterTransform  # noqa: E402

__all__ += ["PlanarTransform", "RadialTransform", "SylvesterTransform"]
from .batchnorm import BatchNormTransform  # noqa: E402

__all__ += ["BatchNormTransform"]
