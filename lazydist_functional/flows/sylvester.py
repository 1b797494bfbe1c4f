r"""Sylvester flows (van den Berg et al., 2018): orthogonal, Householder and triangular."""

from __future__ import annotations

__all__ = ["Sylvester", "SylvesterTransform", "householder_product", "orthonormal_columns"]

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Transform

from ..transforms import sylvester as _sylvester
from ._hyper import HyperTransform
from .common import FlowConfigError, standard_base
from .core import Flow

VARIANTS = ("orthogonal", "householder", "triangular")


def orthonormal_columns(a: Tensor) -> Tensor:
    r"""The :math:`Q` of the reduced QR decomposition of ``a`` :math:`(*, D, M)`,
    :math:`M \le D`, with signs such that :math:`R` has a positive diagonal (a smooth,
    unique orthonormalization of the columns).

    Example:
        >>> q = orthonormal_columns(torch.randn(4, 2))
        >>> torch.allclose(q.T @ q, torch.eye(2), atol=1e-5)
        True
    """

    q, r = torch.linalg.qr(a)
    sign = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(a.dtype)
    return q * sign.unsqueeze(-2)


def householder_product(v: Tensor) -> Tensor:
    r"""The orthogonal matrix :math:`H_1 H_2 \cdots H_K`, :math:`H_k = I - 2 v_k v_k^T / |v_k|^2`,
    of the rows of ``v`` :math:`(*, K, D)`.

    Example:
        >>> q = householder_product(torch.randn(3, 4))
        >>> torch.allclose(q.T @ q, torch.eye(4), atol=1e-5)
        True
    """

    D = v.shape[-1]
    q = torch.eye(D, dtype=v.dtype, device=v.device).expand(*v.shape[:-2], D, D)
    for k in range(v.shape[-2]):
        vk = v[..., k, :]
        vk = vk / torch.linalg.vector_norm(vk, dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
        q = q - 2 * (q @ vk.unsqueeze(-1)) * vk.unsqueeze(-2)  # Q H_k
    return q


class SylvesterTransform(HyperTransform):
    r"""Lazy Sylvester transform :math:`f(z | c) = z + Q R \tanh(\tilde{R} Q^T z + b)`
    (:class:`~lazydist_functional.transforms.SylvesterTransform`).

    The raw tensors ``"r"``, ``"r_tilde"`` :math:`(M, M)`, ``"b"`` :math:`(M)` and those of
    :math:`Q` are parameters without context, the output of an MLP ``"hyper"`` of the
    context with one. :math:`Q` is, by ``variant``:

    * ``"orthogonal"`` (O-SNF): the orthonormalized columns (:func:`orthonormal_columns`)
      of a free :math:`D \times M` matrix ``"q"``, :math:`M` = ``units`` :math:`\le D`;
    * ``"householder"`` (H-SNF): the product of ``reflections`` Householder reflections
      (:func:`householder_product`) of free vectors ``"v"``, :math:`M = D`;
    * ``"triangular"`` (T-SNF): the identity, or the reversal permutation if ``flip``,
      :math:`M = D` (no parameters).

    Diagonals of :math:`R, \tilde{R}` lie in :math:`(-1, 1)` (:math:`\tanh`), hence
    :math:`r_{ii} \tilde{r}_{ii} > -1` and the transform is invertible for any values; its
    inverse is exact (back substitution with a bracketed Newton solve per coordinate).

    Arguments:
        features: the number of features :math:`D`.
        context: the number of context features.
        variant: ``"orthogonal"``, ``"householder"`` or ``"triangular"``.
        units: :math:`M` of the orthogonal variant (default :math:`D`).
        reflections: the number of reflections of the Householder variant (default :math:`D`).
        flip: whether the triangular variant reverses the features.
        iterations: the Newton iterations per coordinate of the inverse.
        kwargs: passed to :class:`~lazydist_functional.flows._hyper.HyperTransform`
            (``init_scale``) and :class:`~lazydist_functional.nn.MLP`.

    Example:
        >>> t = SylvesterTransform(3, 2, variant="householder")
        >>> f = t.apply(t.init(), torch.randn(2))
        >>> x = torch.randn(3)
        >>> torch.allclose(f.inv(f(x)), x, atol=1e-5)
        True
    """

    def __init__(self, features: int, context: int = 0, variant: str = "orthogonal", units: int | None = None,
                 reflections: int | None = None, flip: bool = False, iterations: int = 24, **kwargs: Any) -> None:
        if variant not in VARIANTS:
            raise FlowConfigError(f"'variant' should be one of {VARIANTS}, got {variant!r}")
        M = features if units is None or variant != "orthogonal" else int(units)
        if not 1 <= M <= features:
            raise FlowConfigError(f"'units' should be between 1 and features={features}, got {units}")
        shapes: dict[str, tuple[int, ...]] = {}
        if variant == "orthogonal":
            shapes["q"] = (features, M)
        elif variant == "householder":
            shapes["v"] = (features if reflections is None else int(reflections), features)
        shapes |= {"r": (M, M), "r_tilde": (M, M), "b": (M,)}
        super().__init__(features, context, shapes, **kwargs)
        self.variant = variant
        self.units = M
        self.flip = bool(flip)
        self.iterations = int(iterations)

    def build(self, r: Tensor, r_tilde: Tensor, b: Tensor, q: Tensor | None = None,
              v: Tensor | None = None) -> Transform:
        if self.variant == "orthogonal":
            q = orthonormal_columns(q)
        elif self.variant == "householder":
            q = householder_product(v)
        else:
            q = torch.eye(self.features, dtype=b.dtype, device=b.device)
            q = q.flip(-1) if self.flip else q
        return _sylvester.SylvesterTransform(q, r, r_tilde, b, self.iterations)


class Sylvester(Flow):
    r"""Sylvester normalizing flow: ``transforms`` Sylvester transforms of one ``variant``
    on :math:`\mathcal{N}(0, I)`, conditional or not, with exact inverses. The triangular
    variant alternates the identity and the reversal permutation, as in the paper.

    References:
        | Sylvester Normalizing Flows for Variational Inference (van den Berg et al., 2018)
        | https://arxiv.org/abs/1803.05649

    Arguments:
        features: the number of features.
        context: the number of context features.
        transforms: the number of Sylvester transforms.
        variant: ``"orthogonal"`` (O-SNF), ``"householder"`` (H-SNF) or ``"triangular"`` (T-SNF).
        kwargs: passed to :class:`SylvesterTransform`.

    Example:
        >>> flow = Sylvester(3, 2, variant="triangular")
        >>> d = flow.apply(flow.init(), torch.randn(5, 2))
        >>> x, log_p = d.rsample_and_log_prob()
        >>> torch.allclose(log_p, d.log_prob(x), atol=1e-4)
        True
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, variant: str = "orthogonal",
                 **kwargs: Any) -> None:
        layers = [
            SylvesterTransform(features, context, variant, flip=variant == "triangular" and i % 2 == 1, **kwargs)
            for i in range(transforms)
        ]
        super().__init__(layers, standard_base(features))
        self.features = int(features)
        self.variant = variant
