r"""``zuko.mixtures``: Gaussian mixture models as lazy distributions (Zuko 1.6 names).

The module namespace holds the same public names as Zuko's (including what Zuko
imports there, e.g. torch's ``MultivariateNormal``); helpers are private.
"""


__all__ = ["GMM"]

# Zuko's namespace: the names it imports are public here too (hence the F401s)
import copy as _copy
from collections.abc import Sequence  # noqa: F401
from math import prod  # noqa: F401
from typing import Any as _Any
from typing import Literal

import torch
import torch.nn as nn  # noqa: F401
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal  # noqa: F401

from ..distributions import DiagNormal, Mixture  # noqa: F401
from ..flows import mixture as _core
from ..flows._conditioner import unpack  # noqa: F401
from ..pytree import flatten_names as _flatten_names
from .lazy import LazyDistribution  # noqa: F401
from .lazy import SpecDistribution as _SpecDistribution
from .module import NoSpecError as _NoSpecError
from .nn import MLP  # noqa: F401


class GMM(_SpecDistribution):
    r"""Gaussian mixture model :math:`p(X | c) = \sum_i w_i(c) \, \mathcal{N}(X | \mu_i(c), \Sigma_i(c))`:
    the module of :class:`lazydist_functional.flows.GMM` (Zuko's signature, parameter names
    and checkpoints). ``full`` covariances give a :class:`torch.distributions.MultivariateNormal`
    base, the others a :class:`~lazydist_functional.distributions.DiagNormal`.

    The arguments are the spec's; its configuration (``components``, ``tied``,
    ``epsilon``, ``shapes``, ...) reads as attributes of the module, as in Zuko.

    Example:
        >>> gmm = GMM(2, components=3)
        >>> gmm.initialize(torch.randn(100, 2), "kmeans")
        >>> d = gmm()
        >>> d.log_prob(torch.zeros(2)).shape, d.base.covariance_matrix.shape
        (torch.Size([]), torch.Size([3, 2, 2]))
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        components: int = 2,
        covariance_type: Literal["full", "diagonal", "spherical"] = "full",
        tied: bool = False,
        epsilon: float = 1e-6,
        **kwargs: _Any,
    ) -> None:
        super().__init__(_core.GMM(features, context, components, covariance_type, tied, epsilon, **kwargs))

    @property
    def covariance_type(self) -> str:
        return self._built_spec.covariance_type

    @covariance_type.setter
    def covariance_type(self, value: str) -> None:
        # as in Zuko, an invalid type set here is reported by ``forward``/``initialize``
        spec = _copy.copy(self._built_spec)
        spec.covariance_type = value
        self.__dict__["_spec"] = spec

    @torch.no_grad()
    def initialize(self, x: Tensor, strategy: Literal["random", "kmeans", "kmeans++"]) -> None:
        r"""Fits the components to clusters of ``x`` (N, D) in place: weights from cluster
        sizes, means and covariances from the clusters (see
        :meth:`lazydist_functional.flows.GMM.initialize`)."""

        try:
            spec = self.spec
        except _NoSpecError:  # a child replaced or hooked: write where Zuko writes
            values = self._built_spec.initial_values(x, strategy)
            if self._built_spec.hyper is not None:
                self.hyper[-1].weight.mul_(1e-2)
                self.hyper[-1].bias.copy_(torch.cat([v.flatten() for v in values]))
            else:
                for p, v in zip(self.phi, values, strict=True):
                    p.copy_(v)
            return
        params, _ = self.trees()
        current = dict(self.named_parameters())
        for name, value in _flatten_names(spec.initialize(params, x, strategy)).items():
            current[name].copy_(value)
