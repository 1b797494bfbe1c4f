r"""Zuko-compatible ``BayesianModel`` module (``zuko.bayesian`` names).

The posterior's math is the core's (:mod:`lazydist_functional.bayesian`); this module
holds the variational parameters and puts a draw into the base module for the duration
of :meth:`BayesianModel.reparameterize`, with the machinery of
:func:`torch.func.functional_call`.
"""

from __future__ import annotations

__all__ = ["BayesianModel"]

import copy
import math  # noqa: F401  (zuko.bayesian's namespace)
import re  # noqa: F401  (zuko.bayesian's namespace)
from collections.abc import Generator, Iterator, Sequence  # noqa: F401
from contextlib import contextmanager
from functools import partial  # noqa: F401  (zuko.bayesian's namespace)
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils.stateless import _reparametrize_module

from .. import bayesian as _core
from .nn import Linear, MaskedLinear, linear  # noqa: F401  (zuko.bayesian's namespace)


class BayesianModel(nn.Module):
    r"""Factorized Gaussian posterior over a base module's parameters.

    Same names and state-dict layout as ``zuko.bayesian.BayesianModel``:
    ``base.*``, ``means.<name with '-'>``, ``logvars.<...>``. The functional twin is
    :class:`lazydist_functional.bayesian.BayesianModel`.

    Arguments:
        base: a base module.
        init_logvar: the initial posterior log-variance.
        include_params: parameter name prefixes to include (``*`` matches one name
            component, ``**`` several); by default, all parameters.
        exclude_params: parameter name prefixes to exclude.

    Example:
        >>> from lazydist_functional.adapters.flows import MAF
        >>> bayes = BayesianModel(MAF(2, 1))
        >>> with bayes.reparameterize(local_trick=True) as flow:
        ...     lp = flow(torch.randn(1)).log_prob(torch.randn(2))
        >>> (lp + bayes.kl_divergence()).shape
        torch.Size([])
    """

    def __init__(
        self,
        base: nn.Module,
        init_logvar: float = -9.0,
        include_params: Sequence[str] = ("",),
        exclude_params: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.base = base
        self.means = nn.ParameterDict()
        self.logvars = nn.ParameterDict()
        params = dict(base.named_parameters())
        for name in _core.select_names(params, include_params, exclude_params):
            key = name.replace(".", "-")
            self.means[key] = nn.Parameter(params[name].detach().clone())
            self.logvars[key] = nn.Parameter(init_logvar + 1e-3 * torch.randn_like(params[name]))

    def forward(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "'forward' method of BayesianModel should not be called directly. "
            "Use 'sample_model' or 'reparameterize' instead."
        )

    def sample_params(self) -> dict[str, Tensor]:
        r"""Base parameters (dotted names) drawn from the posterior (reparameterized)."""

        return _core.sample_params(dict(self.means), dict(self.logvars))

    def sample_model(self) -> nn.Module:
        r"""A standalone copy of the base model with sampled weights (no gradients to the
        posterior: not for training)."""

        with torch.no_grad():
            params = self.sample_params()
        model = copy.deepcopy(self.base)
        model.load_state_dict(params, strict=False)
        return model

    @contextmanager
    def reparameterize(self, local_trick: bool = False) -> Iterator[nn.Module]:
        r"""Within the context, the base model holds one posterior draw (differentiable
        w.r.t. the means and log-variances) and is deterministic.

        With ``local_trick=True``, linear layers (this library's networks, and
        ``nn.Linear``) sample their outputs instead of their weights (the local
        reparameterization trick, :class:`~lazydist_functional.nn.GaussianWeight`), with
        one noise draw per layer and output shape, as Zuko does.

        The draw is substituted with the context manager behind
        :func:`torch.func.functional_call` (``functional_call`` itself is a single call,
        while this context yields the base module, as Zuko's does).

        References:
            | Variational Dropout and the Local Reparameterization Trick (Kingma et al., 2015)
            | https://arxiv.org/abs/1506.02557
        """

        params = _core.sample_params(dict(self.means), dict(self.logvars), local=local_trick)
        with _reparametrize_module(self.base, params):
            yield self.base

    def kl_divergence(self, prior_var: float = 1.0) -> Tensor:
        r""":math:`\mathrm{KL}(q \,\|\, \mathcal{N}(0, s^2 I))`."""

        return _core.kl_divergence(dict(self.means), dict(self.logvars), prior_var)

    def __getattr__(self, name: str) -> Any:
        r"""Attributes not found on the Bayesian model are looked up on the base model (as Zuko)."""

        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.base, name)
