r"""``zuko.flows``: Zuko-compatible flow modules with pure specs inside.

Each module holds the core spec of the same name (``MAF(3, 2).spec`` is a
:class:`lazydist_functional.flows.MAF`) and registers its parameters and buffers
under Zuko's names, so a Zuko 1.6 ``state_dict`` of the same configuration loads
with ``load_state_dict``. Submodules mirror Zuko's (``zuko.flows.core``,
``.autoregressive``, ``.coupling``, ``.continuous``, ``.gaussianization``,
``.mixture``, ``.neural``, ``.polynomial``, ``.spline``).
"""

from . import autoregressive, continuous, core, coupling, gaussianization, mixture, neural, polynomial, spline
from ..module import to_module
from .autoregressive import MAF, MaskedAutoregressiveTransform
from .continuous import CNF, FFJTransform
from .core import (
    Flow,
    LazyComposedTransform,
    LazyDistribution,
    LazyInverse,
    LazyTransform,
    UnconditionalDistribution,
    UnconditionalTransform,
)
from .coupling import NICE, GeneralCouplingTransform, RealNVP
from .gaussianization import GF, ElementWiseTransform
from .mixture import GMM
from .neural import NAF, UNAF
from .polynomial import BPF, SOSPF
from .spline import NCSF, NSF

__all__ = [
    "BPF",
    "CNF",
    "GF",
    "GMM",
    "MAF",
    "NAF",
    "NCSF",
    "NICE",
    "NSF",
    "SOSPF",
    "UNAF",
    "ElementWiseTransform",
    "FFJTransform",
    "Flow",
    "GeneralCouplingTransform",
    "LazyComposedTransform",
    "LazyDistribution",
    "LazyInverse",
    "LazyTransform",
    "MaskedAutoregressiveTransform",
    "RealNVP",
    "UnconditionalDistribution",
    "UnconditionalTransform",
    "to_module",
]

from . import glow  # noqa: E402
from .glow import Glow, MultiScaleRealNVP  # noqa: E402

__all__ += ["Glow", "MultiScaleRealNVP"]
# Flows Zuko 1.6 does not have (issue 16).
from . import planar, radial, sylvester  # noqa: E402
from .planar import Planar, PlanarTransform  # noqa: E402
from .radial import Radial, RadialTransform  # noqa: E402
from .sylvester import Sylvester, SylvesterTransform  # noqa: E402

__all__ += ["Planar", "PlanarTransform", "Radial", "RadialTransform", "Sylvester", "SylvesterTransform"]
from . import batchnorm  # noqa: E402
from .batchnorm import BatchNormTransform  # noqa: E402

__all__ += ["BatchNormTransform"]
