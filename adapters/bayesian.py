r"""Zuko-compatible ``BayesianModel`` module (``zuko.bayesian`` names)."""

from __future__ import annotations

__all__ = ["BayesianModel"]

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ..bayesian import _pattern, softclip


class BayesianModel(nn.Module):
    r"""Factorized Gaussian posterior over a base module's parameters.

    Same names and state-dict layout as ``zuko.bayesian.BayesianModel``:
    ``base.*``, ``means.<name with '-'>``, ``logvars.<...>``. The functional twin is
    :class:`lazydist_functional.bayesian.BayesianModel`.

    Example:
        >>> from lazydist_functional.adapters.flows import MAF
        >>> bayes = BayesianModel(MAF(2, 1))
        >>> with bayes.reparameterize() as flow:
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
        include = [_pattern(p) for p in include_params]
        exclude = [_pattern(p) for p in exclude_params]
        for name, param in base.named_parameters():
            if any(p.fullmatch(name) for p in include) and not any(p.fullmatch(name) for p in exclude):
                key = name.replace(".", "-")
                self.means[key] = nn.Parameter(param.detach().clone())
                self.logvars[key] = nn.Parameter(init_logvar + 1e-3 * torch.randn_like(param))

    def forward(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("call sample_model() or use the reparameterize() context instead of BayesianModel()")

    def sample_params(self) -> dict[str, Tensor]:
        r"""Base parameters (dotted names) drawn from the posterior (reparameterized)."""

        out = {}
        for key, mean in self.means.items():
            std = torch.exp(softclip(self.logvars[key], 18.0) / 2)
            out[key.replace("-", ".")] = mean + std * torch.randn_like(mean)
        return out

    def sample_model(self) -> nn.Module:
        r"""A standalone copy of the base model with sampled weights (no gradients)."""

        with torch.no_grad():
            params = self.sample_params()
        model = copy.deepcopy(self.base)
        model.load_state_dict(params, strict=False)
        return model

    @contextmanager
    def reparameterize(self, local_trick: bool = False) -> Iterator[nn.Module]:
        r"""Within the context, the base model holds one posterior sample (differentiable
        w.r.t. the means and log-variances). ``local_trick`` is not supported: use the
        functional :class:`~lazydist_functional.bayesian.BayesianModel` with ``vmap`` instead."""

        if local_trick:
            raise NotImplementedError("local_trick=True is not supported by this adapter")
        sampled = self.sample_params()
        saved = []
        modules = dict(self.base.named_modules())
        try:
            for name, value in sampled.items():
                owner, _, attr = name.rpartition(".")
                module = modules[owner]
                saved.append((module, attr, module._parameters[attr]))
                module._parameters[attr] = value
            yield self.base
        finally:
            for module, attr, original in reversed(saved):
                module._parameters[attr] = original

    def kl_divergence(self, prior_var: float = 1.0) -> Tensor:
        r""":math:`\mathrm{KL}(q \,\|\, \mathcal{N}(0, s^2 I))`."""

        total = torch.zeros(())
        for key, mean in self.means.items():
            logvar = softclip(self.logvars[key], 18.0)
            total = total + 0.5 * (logvar.exp() / prior_var + mean**2 / prior_var
                                   + torch.log(torch.tensor(prior_var)) - logvar - 1).sum()
        return total
