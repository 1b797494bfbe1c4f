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

from .neural import MNN, NAF, UMNN, UNAF, NeuralAutoregressiveTransform  # noqa: E402
from .polynomial import BPF, SOSPF  # noqa: E402

__all__ += ["BPF", "MNN", "NAF", "NeuralAutoregressiveTransform", "SOSPF", "UMNN", "UNAF"]

from .continuous import CNF, FFJTransform  # noqa: E402

__all__ += ["CNF", "FFJTransform"]
from .elementwise import ElementWiseTransform  # noqa: E402
from .gaussianization import GF  # noqa: E402

__all__ += ["ElementWiseTransform", "GF"]
from .grouped import GroupedMaskedAutoregressiveTransform  # noqa: E402

__all__ += ["GroupedMaskedAutoregressiveTransform"]
from .spline import NCSF, CircularRQSTransform  # noqa: E402

__all__ += ["NCSF", "CircularRQSTransform"]
from .mixture import GMM  # noqa: E402

__all__ += ["GMM"]
from .actnorm import ActNorm  # noqa: E402
from .conv1x1 import InvertibleConv1x1  # noqa: E402
from .conv_coupling import ConvCouplingTransform  # noqa: E402
from .glow import Glow  # noqa: E402
from .multiscale import LazyMultiScaleTransform, MultiScaleFlow, MultiScaleRealNVP  # noqa: E402

__all__ += [
    "ActNorm",
    "ConvCouplingTransform",
    "Glow",
    "InvertibleConv1x1",
    "LazyMultiScaleTransform",
    "MultiScaleFlow",
    "MultiScaleRealNVP",
]
from .planar import Planar, PlanarTransform  # noqa: E402
from .radial import Radial, RadialTransform  # noqa: E402
from .sylvester import Sylvester, SylvesterTransform  # noqa: E402

__all__ += ["Planar", "PlanarTransform", "Radial", "RadialTransform", "Sylvester", "SylvesterTransform"]
from .batchnorm import BatchNormTransform, with_batch_norm  # noqa: E402

__all__ += ["BatchNormTransform", "with_batch_norm"]
