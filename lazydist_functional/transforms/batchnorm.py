r"""Batch normalization as a transform (as between the layers of MAF)."""

from __future__ import annotations

__all__ = ["BatchNormTransform", "MODES", "running_updates"]

from math import prod

import torch
from torch import Tensor
from torch.distributions import Transform, constraints

from ..checks import ShapeError
from ..pytree import register_pytree_class
from .base import ComposedTransform, FunctionalTransform, check_input

MODES = ("eval", "train", "update")


@register_pytree_class(
    children=("log_gamma", "beta", "running_mean", "running_var"), static=("mode", "momentum", "eps", "path")
)
class BatchNormTransform(FunctionalTransform):
    r"""Batch normalization :math:`y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} e^{\gamma} + \beta`
    on :math:`\mathbb{R}^D`, feature-wise.

    .. math:: \log |\det J(x)| = \sum_{i=1}^D \gamma_i - \frac{1}{2} \log(\sigma_i^2 + \epsilon)

    By ``mode``:

    * ``"eval"``: :math:`\mu, \sigma^2` are the running statistics ``running_mean``,
      ``running_var``; an element-wise affine bijection, inverse exact.
    * ``"train"``: :math:`\mu, \sigma^2` are the mean and (biased) variance of the batch being
      transformed, over all its dimensions but the last (so under ``vmap`` over members,
      each member's own batch), differentiable, as in the MAF paper; the log-determinant is
      that of the map with these statistics held fixed (the paper's). The inverse, which
      has no batch of inputs to take statistics from, uses the running statistics (as the
      MAF paper's sampling does): in this mode ``inv`` is the eval-mode inverse.
      :meth:`running_update` gives the updated running statistics.
    * ``"update"``: as ``"train"``, and the forward also writes the updated running
      statistics into ``running_mean`` / ``running_var`` in place (the adapter's buffers,
      as ``nn.BatchNorm1d`` in training mode); never used by the functional API.

    The running statistics follow :math:`m \leftarrow (1 - \lambda) m + \lambda \mu`,
    :math:`v \leftarrow (1 - \lambda) v + \lambda \frac{n}{n - 1} \sigma^2` (``momentum``
    :math:`\lambda`, :math:`n` samples), as ``nn.BatchNorm1d``.

    References:
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        log_gamma: the log-scale :math:`\gamma`, shape :math:`(*, D)`.
        beta: the shift :math:`\beta`, shape :math:`(*, D)`.
        running_mean: the running mean, shape :math:`(*, D)`.
        running_var: the running variance, shape :math:`(*, D)`.
        mode: ``"eval"``, ``"train"`` or ``"update"``.
        momentum: :math:`\lambda`.
        eps: :math:`\epsilon`.
        path: the dotted name of this layer in its spec's state tree (set by the spec).

    Example:
        >>> t = BatchNormTransform(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.ones(2), mode="train")
        >>> y = t(3 + 2 * torch.randn(1000, 2))
        >>> torch.allclose(y.mean(0), torch.zeros(2), atol=1e-4), torch.allclose(y.std(0), torch.ones(2), atol=1e-2)
        (True, True)
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, log_gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor,
                 mode: str = "eval", momentum: float = 0.1, eps: float = 1e-5, path: str = "") -> None:
        self.log_gamma = log_gamma
        self.beta = beta
        self.running_mean = running_mean
        self.running_var = running_var
        self.mode = mode
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.path = path

    def _batch_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_input(self, x, (self.log_gamma.shape[-1],), self.log_gamma.shape[:-1])
        return (self.running_mean, self.running_var) if self.mode == "eval" else self._moments(x)

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if prod(x.shape[:-1]) < 2:
            raise ShapeError(
                f"BatchNormTransform in training mode needs more than one sample per feature, got input shape "
                f"{tuple(x.shape)}"
            )
        dims = tuple(range(x.dim() - 1))
        return x.mean(dims), x.var(dims, unbiased=False)

    def running_update(self, x: Tensor) -> dict[str, Tensor]:
        r"""``{"running_mean": ..., "running_var": ...}`` updated with the (detached)
        statistics of the batch ``x``."""

        x = x.detach()
        n = prod(x.shape[:-1])
        mean, var = self._moments(x)
        m = self.momentum
        return {
            "running_mean": (1 - m) * self.running_mean + m * mean,
            "running_var": (1 - m) * self.running_var + m * var * (n / max(n - 1, 1)),
        }

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, var = self._batch_stats(x)
        if self.mode == "update":
            new = self.running_update(x)
            with torch.no_grad():
                self.running_mean.copy_(new["running_mean"])
                self.running_var.copy_(new["running_var"])
        log_scale = self.log_gamma - 0.5 * torch.log(var + self.eps)
        y = (x - mean) * torch.exp(log_scale) + self.beta
        return y, log_scale.sum(-1).expand(y.shape[:-1])

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        check_input(self, y, (self.log_gamma.shape[-1],), self.log_gamma.shape[:-1])
        log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        x = (y - self.beta) * torch.exp(-log_scale) + self.running_mean
        return x, (-log_scale.sum(-1)).expand(x.shape[:-1])


def running_updates(t: Transform, x: Tensor, out: dict[str, Tensor]) -> Tensor:
    r"""Applies ``t`` to ``x``, recording in ``out`` (``{"<path>.running_mean": ...}``) the
    updated running statistics of every training-mode :class:`BatchNormTransform` met in
    a chain of :class:`~lazydist_functional.transforms.ComposedTransform`\ s; returns
    :math:`t(x)`."""

    if isinstance(t, ComposedTransform):
        for s in t.transforms:
            x = running_updates(s, x, out)
        return x
    if isinstance(t, BatchNormTransform) and t.mode != "eval":
        prefix = f"{t.path}." if t.path else ""
        out.update({prefix + k: v for k, v in t.running_update(x).items()})
    return t(x)
