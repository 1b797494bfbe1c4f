r"""Gaussian mixture models (GMM) as lazy distributions."""

from __future__ import annotations

__all__ = ["GMM", "TooFewSamplesError", "UnknownOptionError"]

from collections.abc import Mapping
from math import prod
from typing import Any, Literal

import torch
from torch import Tensor

from ..distributions import DiagNormal, Mixture, MultivariateNormal
from ..functorch_levels import compiling_under_vmap
from ..nn import MLP, on_device
from ..spec import Spec
from ._conditioner import unpack
from .common import at_least


COVARIANCE_TYPES = ("full", "diagonal", "spherical")
STRATEGIES = ("random", "kmeans", "kmeans++")


class UnknownOptionError(NotImplementedError, ValueError):
    r"""An option (covariance type, clustering strategy) outside the known set. A
    :class:`NotImplementedError` as in Zuko (whose users catch that) and a :class:`ValueError`.

    Example:
        >>> try:
        ...     GMM(2, covariance_type="cube")
        ... except NotImplementedError as error:
        ...     print(error)
        Unknown covariance type 'cube': expected 'full', 'diagonal' or 'spherical'
    """


class TooFewSamplesError(AssertionError, ValueError):
    r"""Fewer samples than components to initialize a GMM from. An :class:`AssertionError`
    as in Zuko (whose users catch that) and a :class:`ValueError`."""


def _check_option(what: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        expected = ", ".join(map(repr, known[:-1])) + f" or {known[-1]!r}"
        raise UnknownOptionError(f"Unknown {what} {value!r}: expected {expected}")


def _shapes(components: int, features: int, covariance_type: str, tied: bool) -> list[tuple[int, ...]]:
    _check_option("covariance type", covariance_type, COVARIANCE_TYPES)
    lead = 1 if tied else components
    shapes = [(components,), (components, features)]
    if covariance_type == "full":
        shapes += [(lead, features), (lead, features * (features - 1) // 2)]
    elif covariance_type == "diagonal":
        shapes += [(lead, features)]
    else:  # spherical
        shapes += [(lead, 1)]
    return shapes


class GMM(Spec):
    r"""Gaussian mixture :math:`p(x \mid c) = \sum_i w_i(c) \, \mathcal{N}(x \mid \mu_i(c), \Sigma_i(c))`.

    Unconditional: the parameters are ``phi.0`` (logits), ``phi.1`` (means),
    ``phi.2`` (log-diagonal of the Cholesky factor), ``phi.3`` (its strict lower
    triangle, ``full`` only). Conditional: an MLP (``hyper``) outputs them from
    :math:`c`. Names, shapes and parametrization are Zuko's, so its checkpoints load.

    Arguments:
        features: the number of features.
        context: the number of context features.
        components: the number of components :math:`K`.
        covariance_type: ``"full"``, ``"diagonal"`` or ``"spherical"``.
        tied: share the covariance across components.
        epsilon: added to the scale's diagonal.
        kwargs: passed to :class:`~lazydist_functional.nn.MLP`.

    Example:
        >>> gmm = GMM(2, components=3)
        >>> params = gmm.initialize(gmm.init(), torch.randn(100, 2), "kmeans++")
        >>> gmm.apply(params).log_prob(torch.zeros(2)).shape
        torch.Size([])
    """

    def __init__(
        self,
        features: int,
        context: int = 0,
        components: int = 2,
        covariance_type: Literal["full", "diagonal", "spherical"] = "full",
        tied: bool = False,
        epsilon: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        self.features, self.context = int(features), int(context)
        self.components = components = at_least("GMM", "components", components)
        self.covariance_type, self.tied, self.epsilon = covariance_type, bool(tied), float(epsilon)
        self.shapes = _shapes(components, features, covariance_type, tied)
        self.total = sum(prod(s) for s in self.shapes)
        self.hyper = MLP(context, self.total, **kwargs) if context > 0 else None
        self.tril = torch.tril_indices(features, features, offset=-1)
        self._fill = _fill_index(self.features)

    def init(self, generator=None, *, dtype=None, device=None) -> dict[str, Any]:
        if self.hyper is not None:
            return {"hyper": self.hyper.init(generator, dtype=dtype, device=device)}
        dtype = dtype or torch.get_default_dtype()
        return {"phi": {
            str(i): on_device(lambda s=s: torch.randn(s, generator=generator, dtype=dtype), s, dtype, device)
            for i, s in enumerate(self.shapes)
        }}

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> Mixture:
        if self.hyper is not None:
            phi = unpack(self.hyper._apply(params["hyper"], c, {}), self.shapes)
        else:
            phi = [params["phi"][str(i)] for i in range(len(self.shapes))]
        _check_option("covariance type", self.covariance_type, COVARIANCE_TYPES)
        logits, loc, diag = phi[0], phi[1], phi[2]
        if self.covariance_type != "full":
            return Mixture(DiagNormal(loc, diag.exp() + self.epsilon), logits)
        scale = _scale_tril(diag.exp() + self.epsilon, phi[3], self._fill)
        return Mixture(MultivariateNormal(loc, scale_tril=scale), logits)

    # -- fitting helper (not a torch.func transform target) ------------------------------
    @torch.no_grad()
    def initial_values(
        self,
        x: Tensor,
        strategy: Literal["random", "kmeans", "kmeans++"] = "kmeans++",
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        r"""The component parameters fitted to clusters of ``x`` (N, D), in the order of
        ``phi`` (logits, means, then the covariance's parameters): weights from cluster
        sizes, means from cluster means, covariances from the weighted cluster covariances.

        Example:
            >>> gmm = GMM(2, components=3)
            >>> [tuple(v.shape) for v in gmm.initial_values(torch.randn(50, 2), "kmeans")]
            [(3,), (3, 2), (3, 2), (3, 1)]
        """

        _check_option("covariance type", self.covariance_type, COVARIANCE_TYPES)
        _check_option("clustering strategy", strategy, STRATEGIES)
        n = x.shape[0]
        if n <= self.components:
            raise TooFewSamplesError(
                f"The number of samples ({n}) should be larger than the number of components "
                f"({self.components}): initialize needs more samples than components"
            )
        centers = _cluster(x, self.components, strategy, generator)
        match = torch.nn.functional.one_hot(torch.cdist(x, centers).argmin(-1), self.components).to(x.dtype)
        counts = match.sum(0)
        means = (match.T @ x) / counts[:, None].clamp_min(1)
        logits = (counts / counts.sum()).log()
        covs = torch.stack([torch.cov(x.T, aweights=match[:, k]) for k in range(self.components)]).reshape(
            self.components, self.features, self.features)
        if self.tied:
            covs = covs.mean(0, keepdim=True)
        if self.covariance_type == "full":
            L = torch.linalg.cholesky(covs)
            values = [logits, means, torch.diagonal(L, dim1=-2, dim2=-1).log(), L[..., self.tril[0], self.tril[1]]]
        else:
            var = torch.diagonal(covs, dim1=-2, dim2=-1)
            if self.covariance_type == "spherical":
                var = var.mean(-1, keepdim=True)
            # the model's scale is exp(phi.2): store log standard deviations (Zuko 1.6 stores
            # log variances here, which makes its initial components too narrow)
            values = [logits, means, 0.5 * var.log()]
        return values

    @torch.no_grad()
    def initialize(
        self,
        params: Mapping[str, Any],
        x: Tensor,
        strategy: Literal["random", "kmeans", "kmeans++"] = "kmeans++",
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        r"""Returns new parameters whose components are :meth:`initial_values` of ``x``.
        Conditional GMMs set the last layer's bias to these values and shrink its weight
        (as Zuko does)."""

        values = self.initial_values(x, strategy, generator)
        if self.hyper is None:
            return {"phi": {str(i): v.to(params["phi"][str(i)].dtype) for i, v in enumerate(values)}}
        hyper = {k: dict(v) for k, v in params["hyper"].items()}
        last = self.hyper.names[-1]
        hyper[last] = {"weight": hyper[last]["weight"] * 1e-2, "bias": torch.cat([v.flatten() for v in values])}
        return {"hyper": hyper}


def _fill_index(d: int) -> Tensor:
    r"""The flat positions (row-major, in the :math:`d^2` entries of a :math:`d \times d`
    factor) of the strict lower entries, listed as ``tril_indices`` lists them."""

    tril = torch.tril_indices(d, d, offset=-1)
    return tril[0] * d + tril[1]


def _padded_rows(diagonal: Tensor, lower: Tensor) -> Tensor:
    r"""The :math:`d^2` entries of the factor as a sum of zero-padded pieces, two per row
    (row :math:`i`'s :math:`i` strict lower entries, then its diagonal entry): exact (a value
    plus zeros), fused by inductor into one kernel, and free of indexing, whose ``vmap``
    rules (``scatter``, ``cat``) specialize the vmapped size under ``torch.compile``."""

    d = diagonal.shape[-1]

    def placed(piece: Tensor, at: int) -> Tensor:  # ``piece`` at flat position ``at``, zeros elsewhere
        return torch.nn.functional.pad(piece, (at, d * d - at - piece.shape[-1]))

    total = placed(diagonal[..., :1], 0)
    for i in range(1, d):
        start = i * (i - 1) // 2  # row i's strict lower entries, row-major
        total = total + placed(lower[..., start : start + i], i * d) + placed(diagonal[..., i : i + 1], i * d + i)
    return total


def _scale_tril(diagonal: Tensor, lower: Tensor, index: Tensor) -> Tensor:
    r"""The lower-triangular :math:`(*, d, d)` factor with ``diagonal`` (:math:`(*, d)`) on
    its diagonal and ``lower`` (:math:`(*, d(d-1)/2)`, row-major as ``tril_indices``)
    below it; ``index`` from :func:`_fill_index`.

    A ``scatter`` into zeros plus ``diag_embed``; while compiling under a ``vmap`` that
    batches the values, a sum of zero-padded row pieces (:func:`_padded_rows`: one graph
    for every batch size, and as fast as the batched call's ``scatter``, where a ``where``
    over gathered entries cost the GMM's compiled vmap 1.24-1.53x the batched call). Both copy
    the values exactly.

    Example:
        >>> _scale_tril(torch.tensor([1.0, 2.0]), torch.tensor([3.0]), _fill_index(2))
        tensor([[1., 0.],
                [3., 2.]])
    """

    d = diagonal.shape[-1]
    if d > 1 and compiling_under_vmap(diagonal, lower):
        filled = _padded_rows(diagonal, lower)
        return filled.reshape(*filled.shape[:-1], d, d)
    batch, flat = lower.shape[:-1], index.to(lower.device)
    filled = lower.new_zeros(*batch, d * d).scatter(-1, flat.expand(*batch, -1), lower)
    return torch.diag_embed(diagonal) + filled.reshape(*batch, d, d)


def _cluster(x: Tensor, k: int, strategy: str, generator: torch.Generator | None) -> Tensor:
    n = x.shape[0]
    pick = lambda weights, m: torch.multinomial(weights, m, generator=generator)  # noqa: E731
    if strategy == "random":
        return x[pick(torch.ones(n), k)]
    # k-means++ seeding: each next center drawn with probability proportional to D(x)^2
    centers = [x[pick(torch.ones(n), 1)][0]]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centers)).min(-1).values.square()
        centers.append(x[pick(d2 + 1e-12, 1)][0])
    centers = torch.stack(centers)
    if strategy == "kmeans":  # a few Lloyd iterations; empty clusters keep their center
        for _ in range(7):
            match = torch.nn.functional.one_hot(torch.cdist(x, centers).argmin(-1), k).to(x.dtype)
            counts = match.sum(0)[:, None]
            centers = torch.where(counts > 0, (match.T @ x) / counts.clamp_min(1), centers)
    return centers
