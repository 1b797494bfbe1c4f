r"""Planar transform (Rezende & Mohamed, 2015), with an exact inverse."""

from __future__ import annotations

__all__ = ["PlanarTransform", "planar_u_hat"]

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import constraints

from ..pytree import Partial, register_pytree_class
from ..roots import newton_bisection
from .base import FunctionalTransform, check_input


def planar_u_hat(w: Tensor, u: Tensor) -> Tensor:
    r"""The constrained :math:`\hat{u} = u + (m(w^T u) - w^T u) \, w / |w|^2`, with
    :math:`m(a) = -1 + \log(1 + e^a)`, so that :math:`w^T \hat{u} = m(w^T u) > -1`.

    Example:
        >>> w, u = torch.tensor([1.0, 0.0]), torch.tensor([-5.0, 2.0])
        >>> bool((w * planar_u_hat(w, u)).sum() > -1)
        True
    """

    wu = (w * u).sum(-1, keepdim=True)
    ww = (w * w).sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    return u + (F.softplus(wu) - 1 - wu) * w / ww


def _scalar(c: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`g(a) = a + c \tanh(a)` and :math:`g'(a)`."""

    t = torch.tanh(a)
    return a + c * t, 1 + c * (1 - t * t)


@register_pytree_class(children=("w", "u", "b"), static=("iterations",))
class PlanarTransform(FunctionalTransform):
    r"""Planar transform :math:`f(z) = z + \hat{u} \tanh(w^T z + b)` on :math:`\mathbb{R}^D`.

    .. math:: \log |\det J_f(z)| = \log (1 + \tanh'(w^T z + b) \, w^T \hat{u})

    The raw ``u`` is mapped to :math:`\hat{u}` (:func:`planar_u_hat`), so
    :math:`w^T \hat{u} > -1` and :math:`f` is invertible for any ``w``, ``u``, ``b``.

    Inverse: the component of :math:`y = f(z)` along :math:`w` gives the scalar equation
    :math:`w^T y + b = a + (w^T \hat{u}) \tanh(a)` in :math:`a = w^T z + b`, strictly
    increasing in :math:`a` and with its root in :math:`[t - |w^T \hat u|, t + |w^T \hat u|]`
    (:math:`t = w^T y + b`, as :math:`|\tanh| \le 1`); it is solved by the bracketed Newton
    method of :func:`~lazydist_functional.roots.newton_bisection` (``iterations`` steps),
    then :math:`z = y - \hat{u} \tanh(a)`.

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Arguments:
        w: the normal :math:`w`, shape :math:`(*, D)`.
        u: the raw (unconstrained) :math:`u`, shape :math:`(*, D)`.
        b: the bias :math:`b`, shape :math:`(*)`.
        iterations: the Newton iterations of the inverse.

    Example:
        >>> t = PlanarTransform(torch.tensor([1.0, 2.0]), torch.tensor([-3.0, 0.5]), torch.tensor(0.1))
        >>> z = torch.randn(4, 2)
        >>> torch.allclose(t.inv(t(z)), z, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, w: Tensor, u: Tensor, b: Tensor, iterations: int = 24) -> None:
        self.w = w
        self.u = u
        self.b = b
        self.iterations = int(iterations)

    def _check(self, x: Tensor) -> Tensor:
        check_input(self, x, (self.w.shape[-1],), self.w.shape[:-1])
        return x

    @property
    def u_hat(self) -> Tensor:
        return planar_u_hat(self.w, self.u)

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z)
        u_hat = self.u_hat
        h = torch.tanh((self.w * z).sum(-1) + self.b)
        wu = (self.w * u_hat).sum(-1)
        return z + u_hat * h.unsqueeze(-1), torch.log1p(wu * (1 - h * h))

    def _solve(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self._check(y)
        u_hat = self.u_hat
        wu = (self.w * u_hat).sum(-1)
        t = (self.w * y).sum(-1) + self.b
        c = wu.expand(t.shape)
        a = newton_bisection(Partial(_scalar, (c,)), t, t - c.abs(), t + c.abs(), self.iterations, x0=t, expand=False)
        return a, u_hat, wu

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        a, u_hat, wu = self._solve(y)
        h = torch.tanh(a)
        return y - u_hat * h.unsqueeze(-1), -torch.log1p(wu * (1 - h * h))
