r"""``zuko.flows.mixture``: Gaussian mixture models (the module lives in :mod:`..mixtures`)."""

from ... import flows as _core
from ..mixtures import GMM
from ..module import module_class

__all__ = ["GMM"]

module_class(_core.GMM)(GMM)
