r"""Sylvester transform (van den Berg et al., 2018), with an exact inverse."""

from __future__ import annotations

__all__ = ["SylvesterTransform", "triangular"]

import torch
from torch import Tensor
from torch.distributions import constraints

from ..pytree import Partial, register_pytree_class
from ..roots import newton_bisection
from .base import FunctionalTransform, check_input


def triangular(raw: Tensor) -> Tensor:
    r"""The upper triangular matrix with the strict upper part of ``raw`` and diagonal
    :math:`\tanh(\mathrm{diag}(raw)) \in (-1, 1)`.

    Example:
        >>> triangular(torch.full((2, 2), 10.0))
        tensor([[ 1., 10.],
                [ 0.,  1.]])
    """

    return torch.triu(raw, 1) + torch.diag_embed(torch.tanh(torch.diagonal(raw, dim1=-2, dim2=-1)))


def _matvec(m: Tensor, v: Tensor) -> Tensor:
    return (m @ v.unsqueeze(-1)).squeeze(-1)


def _scalar(r: Tensor, rt: Tensor, c: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`g(v) = v + r \tanh(\tilde{r} v + c)` and :math:`g'(v)`."""

    t = torch.tanh(rt * v + c)
    return v + r * t, 1 + r * rt * (1 - t * t)


@register_pytree_class(children=("q", "r", "r_tilde", "b"), static=("iterations",))
class SylvesterTransform(FunctionalTransform):
    r"""Sylvester transform :math:`f(z) = z + Q R \tanh(\tilde{R} Q^T z + b)` on
    :math:`\mathbb{R}^D`, with :math:`Q \in \mathbb{R}^{D \times M}` of orthonormal columns
    and :math:`R, \tilde{R}` upper triangular :math:`M \times M`.

    ``r`` and ``r_tilde`` are raw square matrices made triangular by :func:`triangular`,
    whose diagonals lie in :math:`(-1, 1)`, so :math:`r_{ii} \tilde{r}_{ii} > -1 =
    -1 / \max \tanh'` and :math:`f` is invertible whatever their values (the paper's
    parametrization). By Sylvester's determinant identity, with :math:`a = \tilde{R} Q^T z + b`,

    .. math:: \log |\det J_f(z)| = \sum_{i=1}^M \log(1 + \tanh'(a_i) \, r_{ii} \tilde{r}_{ii}).

    Inverse: the part of :math:`z` orthogonal to the columns of :math:`Q` is unchanged,
    and :math:`v = Q^T z` solves :math:`Q^T y = v + R \tanh(\tilde{R} v + b)`, an upper
    triangular system: equation :math:`i` involves :math:`v_i, \dots, v_M` only. It is solved
    by back substitution, :math:`i = M, \dots, 1`, each step a scalar equation
    :math:`v_i + r_{ii} \tanh(\tilde{r}_{ii} v_i + c_i) = t_i` strictly increasing in
    :math:`v_i` (slope :math:`\ge 1 - |r_{ii} \tilde{r}_{ii}| > 0`) with its root in
    :math:`[t_i - |r_{ii}|, t_i + |r_{ii}|]`, solved by the bracketed Newton method of
    :func:`~lazydist_functional.roots.newton_bisection` (``iterations`` steps). Then
    :math:`z = y - Q R \tanh(\tilde{R} v + b)`.

    References:
        | Sylvester Normalizing Flows for Variational Inference (van den Berg et al., 2018)
        | https://arxiv.org/abs/1803.05649

    Arguments:
        q: :math:`Q`, shape :math:`(*, D, M)`, with orthonormal columns (not checked).
        r: the raw :math:`R`, shape :math:`(*, M, M)`.
        r_tilde: the raw :math:`\tilde{R}`, shape :math:`(*, M, M)`.
        b: the bias, shape :math:`(*, M)`.
        iterations: the Newton iterations per coordinate of the inverse.

    Example:
        >>> q = torch.linalg.qr(torch.randn(3, 2)).Q
        >>> t = SylvesterTransform(q, torch.randn(2, 2), torch.randn(2, 2), torch.randn(2))
        >>> z = torch.randn(4, 3)
        >>> torch.allclose(t.inv(t(z)), z, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, q: Tensor, r: Tensor, r_tilde: Tensor, b: Tensor, iterations: int = 24) -> None:
        self.q = q
        self.r = r
        self.r_tilde = r_tilde
        self.b = b
        self.iterations = int(iterations)

    def _shift(self, v: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`Q R \tanh(\tilde{R} v + b)` and :math:`\log(1 + \tanh'(a) r_{ii} \tilde{r}_{ii})`."""

        r, rt = triangular(self.r), triangular(self.r_tilde)
        h = torch.tanh(_matvec(rt, v) + self.b)
        diag = torch.diagonal(r, dim1=-2, dim2=-1) * torch.diagonal(rt, dim1=-2, dim2=-1)
        return _matvec(self.q, _matvec(r, h)), torch.log1p(diag * (1 - h * h)).sum(-1)

    def _check(self, x: Tensor) -> Tensor:
        check_input(self, x, (self.q.shape[-2],), self.b.shape[:-1], layer=True)
        return x

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z)
        shift, ladj = self._shift((z.unsqueeze(-2) @ self.q).squeeze(-2))
        return z + shift, ladj

    def _solve(self, y: Tensor) -> Tensor:
        r""":math:`v = Q^T z` from :math:`y`, by back substitution."""

        r, rt = triangular(self.r), triangular(self.r_tilde)
        t = (y.unsqueeze(-2) @ self.q).squeeze(-2)
        M = t.shape[-1]
        v: list[Tensor] = [t[..., 0]] * M
        h: list[Tensor] = [t[..., 0]] * M
        for i in reversed(range(M)):
            rhs = t[..., i]
            c = self.b[..., i]
            for j in range(i + 1, M):
                rhs = rhs - r[..., i, j] * h[j]
                c = c + rt[..., i, j] * v[j]
            rii = r[..., i, i].expand(rhs.shape)
            f = Partial(_scalar, (rii, rt[..., i, i].expand(rhs.shape), c.expand(rhs.shape)))
            v[i] = newton_bisection(f, rhs, rhs - rii.abs(), rhs + rii.abs(), self.iterations, x0=rhs, expand=False)
            h[i] = torch.tanh(rt[..., i, i] * v[i] + c)
        return torch.stack(v, dim=-1)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self._check(y)
        shift, ladj = self._shift(self._solve(y))
        return y - shift, -ladj
