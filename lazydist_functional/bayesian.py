r"""Bayesian flows: a factorized Gaussian variational posterior over a spec's weights.

.. math:: q(\theta) = \prod_i \mathcal{N}(\theta_i \mid \mu_i, \sigma_i^2), \qquad
          \log \sigma_i^2 = \mathrm{softclip}(\ell_i, 18)

In the functional form a weight sample *is* a parameter tree, so K posterior samples
of a flow evaluate in one vmapped call (:meth:`BayesianModel.log_prob_samples`).
Variational parameters are named like Zuko's ``BayesianModel``
(``means.<name with '-' for '.'>``, ``logvars.<...>``), so its checkpoints load.
"""

from __future__ import annotations

__all__ = ["BayesianModel", "kl_divergence", "sample_params", "select_names"]

import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from . import random
from .nn.gaussian import GaussianWeight
from .pytree import flatten_names, unflatten_names
from .spec import Spec


def _pattern(prefix: str) -> re.Pattern:
    r"""A name prefix where ``*`` matches one name component and ``**`` several."""

    if re.fullmatch(r"[\w\.\*]*", prefix) is None:
        raise ValueError(f"invalid parameter prefix {prefix!r}")
    body = re.escape(prefix).replace(r"\*\*", r"[\w\.]+").replace(r"\*", r"\w+")
    return re.compile(body + r".*")


def softclip(x: Tensor, bound: float) -> Tensor:
    r""":math:`x / \sqrt{1 + (x / b)^2}`, a smooth clip of :math:`x` to :math:`(-b, b)`."""

    return x * torch.rsqrt(1 + (x / bound) ** 2)


def select_names(names: Iterable[str], include: Sequence[str] = ("",), exclude: Sequence[str] = ()) -> tuple[str, ...]:
    r"""The dotted ``names`` matching a prefix of ``include`` and none of ``exclude``
    (``*``: one name component, ``**``: several)."""

    inc, exc = [_pattern(p) for p in include], [_pattern(p) for p in exclude]
    return tuple(n for n in names if any(p.fullmatch(n) for p in inc) and not any(p.fullmatch(n) for p in exc))


def _key(name: str) -> str:
    return name.replace(".", "-")


def sample_params(
    means: Mapping[str, Tensor], logvars: Mapping[str, Tensor], local: bool = False, key: Tensor | None = None
) -> dict[str, Tensor]:
    r"""One draw :math:`\theta = \mu + \sigma \odot \epsilon` of the weights, by dotted name.

    ``means`` and ``logvars`` are keyed by names with ``-`` for ``.`` (Zuko's layout);
    :math:`\log \sigma^2 = \mathrm{softclip}(\ell, 18)`. Reparameterized (differentiable
    in :math:`\mu, \ell`), drawn with an out-of-place factory (``vmap(...,
    randomness="different")`` gives independent draws). With ``local=True`` every draw is a
    :class:`~lazydist_functional.nn.GaussianWeight`: linear layers then sample their outputs
    (the local reparameterization trick; eager only). With ``key`` (:mod:`~lazydist_functional.random`),
    weight ``name`` draws :math:`\epsilon` with ``fold_in(key, crc32(name))``, so a draw
    is a pure function of the key and does not depend on which other weights are included.

    Example:
        >>> theta = sample_params({"0-weight": torch.zeros(2)}, {"0-weight": torch.full((2,), -60.0)})
        >>> list(theta), bool(theta["0.weight"].abs().max() < 1e-3)
        (['0.weight'], True)
    """

    if local and key is not None:
        raise ValueError("sample_params: local=True draws inside the layers from torch's generator; it takes no key")
    out = {}
    for name, mean in means.items():
        var = torch.exp(softclip(logvars[name], 18.0))
        if local:
            out[name.replace("-", ".")] = GaussianWeight(mean, var)
            continue
        if key is None:
            eps = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device)
        else:
            eps = random.normal(random.fold_in(key, zlib.crc32(name.encode())).to(mean.device), mean.shape, mean.dtype)
        out[name.replace("-", ".")] = mean + var.sqrt() * eps
    return out


def kl_divergence(means: Mapping[str, Tensor], logvars: Mapping[str, Tensor], prior_var: float = 1.0) -> Tensor:
    r""":math:`\mathrm{KL}(q \,\|\, \mathcal{N}(0, s^2 I)) = \frac{1}{2} \sum_i
    \left(\sigma_i^2 / s^2 + \mu_i^2 / s^2 + \log s^2 - \log \sigma_i^2 - 1\right)`.

    Example:
        >>> kl_divergence({"w": torch.zeros(3)}, {"w": torch.zeros(3)})
        tensor(0.)
    """

    terms = []
    for key, mean in means.items():
        logvar = softclip(logvars[key], 18.0)
        terms.append(0.5 * (logvar.exp() / prior_var + mean**2 / prior_var + math.log(prior_var) - logvar - 1).sum())
    return torch.stack(terms).sum() if terms else torch.zeros(())


class BayesianModel:
    r"""Variational posterior over (a subset of) the parameters of a base spec.

    Arguments:
        base: the base spec (e.g. a flow).
        init_logvar: initial log-variance of the posterior.
        include_params: dotted-name prefixes to include (``*``: one component, ``**``: several).
        exclude_params: dotted-name prefixes to exclude.

    Example:
        >>> from lazydist_functional.flows import MAF
        >>> flow = MAF(2, 1, hidden_features=[8])
        >>> bayes = BayesianModel(flow)
        >>> base_params = flow.init()
        >>> q = bayes.init(base_params)
        >>> lp = bayes.log_prob_samples(q, base_params, torch.randn(1), torch.randn(2), k=4)
        >>> lp.shape
        torch.Size([4])
    """

    def __init__(
        self,
        base: Spec,
        init_logvar: float = -9.0,
        include_params: Sequence[str] = ("",),
        exclude_params: Sequence[str] = (),
    ) -> None:
        self.base = base
        self.init_logvar = float(init_logvar)
        self.names = select_names(base.param_shapes, include_params, exclude_params)

    @staticmethod
    def key(name: str) -> str:
        return _key(name)

    def init(self, base_params: Mapping[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        r"""Posterior means at ``base_params``, log-variances :math:`\approx` ``init_logvar``."""

        flat = flatten_names(base_params)
        means, logvars = {}, {}
        for name in self.names:
            w = flat[name].detach()
            means[self.key(name)] = w.clone()
            noise = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
            logvars[self.key(name)] = self.init_logvar + 1e-3 * noise
        return {"means": means, "logvars": logvars}

    def sample_params(
        self,
        params: Mapping[str, Any],
        base_params: Mapping[str, Any],
        local: bool = False,
        key: Tensor | None = None,
    ) -> dict[str, Any]:
        r"""A base parameter tree with the included weights drawn from :math:`q`
        (:func:`sample_params`; ``local=True``: the local reparameterization trick; ``key``:
        a draw that is a pure function of the key)."""

        flat = dict(flatten_names(base_params))
        flat.update(sample_params(params["means"], params["logvars"], local, key))
        return unflatten_names(flat)

    def kl_divergence(self, params: Mapping[str, Any], prior_var: float = 1.0) -> Tensor:
        r""":math:`\mathrm{KL}(q \,\|\, \mathcal{N}(0, s^2 I))`, summed over all weights (:func:`kl_divergence`)."""

        return kl_divergence(params["means"], params["logvars"], prior_var)

    def apply(
        self,
        params: Mapping[str, Any],
        base_params: Mapping[str, Any],
        c: Tensor | None = None,
        *,
        state: Any = None,
        key: Tensor | None = None,
    ) -> Any:
        r"""The base model's distribution under one posterior weight sample (drawn with
        ``key`` if given)."""

        return self.base.apply(self.sample_params(params, base_params, key=key), c, state=state)

    def log_prob_samples(
        self,
        params: Mapping[str, Any],
        base_params: Mapping[str, Any],
        c: Tensor | None,
        x: Tensor,
        k: int,
        key: Tensor | None = None,
    ) -> Tensor:
        r""":math:`\log p(x \mid c, \theta_j)` for :math:`k` posterior samples :math:`\theta_j`, in one
        vmapped call. Shape ``(k, *batch)``. Without ``key``, independent draws via
        ``randomness="different"``; with ``key``, sample :math:`j` uses ``split(key, k)[j]``
        (the same as ``apply(params, base_params, c, key=split(key, k)[j]).log_prob(x)``)."""

        if key is not None:
            keys = random.split(key, k)
            return torch.func.vmap(lambda kj: self.apply(params, base_params, c, key=kj).log_prob(x))(keys)

        def one(_: Tensor) -> Tensor:
            return self.apply(params, base_params, c).log_prob(x)

        return torch.func.vmap(one, randomness="different")(torch.arange(k))
