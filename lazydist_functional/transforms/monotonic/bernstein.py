r"""Bernstein polynomial transforms (BPF's univariate transforms)."""

from __future__ import annotations

__all__ = ["BernsteinTransform", "BoundedBernsteinTransform"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ...pytree import register_pytree_class
from .base import MonotonicTransform
from .bernstein_inverse import _constants, solve_unit


def _bernstein(t: Tensor, order: int) -> tuple[Tensor, Tensor]:
    r"""Bernstein basis :math:`\binom{M}{i} t^i (1 - t)^{M - i}`, :math:`i = 0..M`, for
    :math:`t \in (0, 1)`, shape :math:`(*, M + 1)`; and the powers :math:`M - i`."""

    # The powers and binomial coefficients as one constant (``torch.compile`` would
    # otherwise fuse and recompute the ``lgamma``\ s for every element).
    i, rest, log_binom = torch.tensor(_constants(order), dtype=t.dtype, device=t.device)
    t = t[..., None]
    return torch.exp(log_binom + i * torch.log(t) + rest * torch.log1p(-t)), rest


def _poly_unrolled(t: Tensor, theta: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    r"""The Bernstein polynomial's value and slope at :math:`t` from its coefficients
    :math:`\theta_0, \dots, \theta_M` (a tuple of tensors), the basis built from the powers of
    :math:`t` and :math:`1 - t` by products: the schedule for ``torch.compile``, which fuses it into
    one element-wise kernel (the eager schedule's basis of shape :math:`(*, M + 1)` and its sums
    over 17 to 22 coefficients per row are not vectorized by inductor on CPU).

    Example:
        >>> t = torch.tensor([0.25])
        >>> theta = (torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0]))
        >>> _poly_unrolled(t, theta)  # f(t) = 2t, f'(t) = 2
        (tensor([0.5000]), tensor([2.]))
    """

    M = len(theta) - 1
    s = 1 - t
    tp, sp = [torch.ones_like(t)], [torch.ones_like(t)]
    for _ in range(M):
        tp.append(tp[-1] * t)
        sp.append(sp[-1] * s)
    value = sum(math.comb(M, i) * tp[i] * sp[M - i] * theta[i] for i in range(M + 1))
    slope = M * sum(math.comb(M - 1, i) * tp[i] * sp[M - 1 - i] * (theta[i + 1] - theta[i]) for i in range(M))
    return value, slope


@register_pytree_class(children=("theta",), static=("bound", "eps", "iterations"))
class BernsteinTransform(MonotonicTransform):
    r"""Monotonic Bernstein polynomial transform, linearly extrapolated outside :math:`[-B, B]`.

    With :math:`t = (x + B) / 2B` and increasing coefficients :math:`\theta_0 < \dots < \theta_M`,

    .. math:: f(x) = \sum_{i=0}^{M} \binom{M}{i} t^i (1 - t)^{M - i} \, \theta_i ,
        \qquad \frac{df}{dx} = \frac{M}{2B} \sum_{i=0}^{M-1} \binom{M-1}{i} t^i (1 - t)^{M-1-i}
        (\theta_{i+1} - \theta_i)

    for :math:`t \in (\epsilon, 1 - \epsilon)`, and the tangent lines at
    :math:`t = \epsilon, 1 - \epsilon` outside. The unconstrained coefficients are made
    increasing by a cumulative sum of softplus increments (the first and last
    increments repeated, so the second derivative vanishes at the bounds), as in Zuko.

    References:
        | Deep transformation models (Sick et al., 2020)
        | https://arxiv.org/abs/2004.00464

    Arguments:
        theta: unconstrained coefficients, shape :math:`(*, M - 2)`.
        bound: the polynomial's domain bound :math:`B`.
        eps: the margin :math:`\epsilon` of the polynomial's domain in unit coordinates.
        iterations: the number of Newton iterations of the inverse.

    Example:
        >>> t = BernsteinTransform(torch.randn(3, 8))
        >>> x = torch.randn(3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-4)
        True
    """

    def __init__(self, theta: Tensor, bound: float = 5.0, eps: float = 1e-6, iterations: int = 12) -> None:
        super().__init__(bound=bound, eps=eps, iterations=iterations)
        self.theta = self._constrain_theta(theta)

    def _constrain_theta(self, u: Tensor) -> Tensor:
        shift = math.log(2.0) * u.shape[-1] / 2
        rest = u[..., 1:]
        increments = F.softplus(torch.cat((rest[..., :1], rest, rest[..., -1:]), dim=-1))
        return torch.cumsum(torch.cat((u[..., :1], increments), dim=-1), dim=-1) - shift

    @property
    def order(self) -> int:
        return self.theta.shape[-1] - 1

    def _poly(self, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""Polynomial value and derivative (in unit coordinates) at :math:`t`."""

        # One basis for both: M B_{i,M-1}(t) = (M - i) B_{i,M}(t) / (1 - t), so the slope
        # M sum_i (theta_i+1 - theta_i) B_{i,M-1}(t) is a sum of positive terms as well.
        M = self.order
        theta = self.theta
        basis, rest = _bernstein(t, M)
        value = (basis * theta).sum(dim=-1)
        weights = (theta[..., 1:] - theta[..., :-1]) * rest[:-1]
        slope = (basis[..., :-1] * weights).sum(dim=-1) / (1 - t)
        return value, slope

    def _ends(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        r"""Values and unit-coordinate slopes at :math:`t = \epsilon` and :math:`1 - \epsilon`."""

        ends = self.theta.new_tensor([self.eps, 1 - self.eps])
        value, slope = self._poly(ends.expand(*self.theta.shape[:-1], 2).movedim(-1, 0))
        return (value[0], value[1]), (slope[0], slope[1])

    def value_and_derivative(self, x: Tensor, unrolled: bool = False) -> tuple[Tensor, Tensor]:
        (v0, v1), (s0, s1) = self._ends()
        B, eps = self.bound, self.eps
        t = (x + B) / (2 * B)
        low, high = t <= eps, t >= 1 - eps
        inside = torch.where(low | high, 0.5, t)
        inner, inner_slope = _poly_unrolled(inside, self.theta.unbind(-1)) if unrolled else self._poly(inside)
        y = torch.where(low, s0 * (t - eps) + v0, torch.where(high, s1 * (t - 1 + eps) + v1, inner))
        dy = torch.where(low, s0, torch.where(high, s1, inner_slope)).expand_as(y) / (2 * B)
        return y, dy

    def f(self, x: Tensor) -> Tensor:
        return self.value_and_derivative(x)[0]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Under ``torch.compile`` the forward evaluates the polynomial unrolled (the inverse, hence
        # sampling, keeps one schedule, bit for bit as eagerly).
        y, dy = self.value_and_derivative(x, unrolled=torch.compiler.is_compiling())
        return y, dy.log()

    def _polygon(self, y: Tensor) -> Tensor:
        r"""The inverse of the control polygon, in unit coordinates: the coefficients
        :math:`\theta_i` are the values of a piecewise-linear increasing function at
        :math:`t = i / M`, which the polynomial follows to :math:`O(1/M)`; its inverse at
        :math:`y` starts Newton's method next to the root (coefficients of a trained flow
        are steep, and from :math:`x = y` the iterations spend themselves on bisecting)."""

        theta = self.theta.detach()
        M = self.order
        # The segment [theta_k, theta_k+1] of y (the end segments beyond the ends).
        k = (theta[..., 1:-1] <= y[..., None]).sum(dim=-1, keepdim=True)
        theta = theta.expand(*k.shape[:-1], M + 1)
        lo, hi = theta.gather(-1, k).squeeze(-1), theta.gather(-1, k + 1).squeeze(-1)
        # (Increments that round to 0 in float32 would give 0 / 0: a positive floor.)
        u = ((y - lo) / (hi - lo).clamp_min(torch.finfo(y.dtype).tiny)).clamp(0.0, 1.0)
        return (k.squeeze(-1) + u) / M

    def _initial_guess(self, y: Tensor) -> Tensor:
        r"""The inverse of the control polygon (see :meth:`_polygon`) at :math:`y`."""

        return (2 * self._polygon(y) - 1) * self.bound

    def _solve(self, y: Tensor) -> Tensor:
        r"""The polynomial's root on its proven bracket :math:`t \in [\epsilon, 1 - \epsilon]`
        (:func:`~lazydist_functional.transforms.monotonic.bernstein_inverse.solve_unit`, from
        the control polygon's inverse), the tangent lines' inverses beyond the ends; with
        gradients enabled, one differentiable Newton step from that (detached) root, whose
        value is the root and whose gradients are the implicit-function theorem's:
        :math:`\partial x / \partial y = 1 / f'(x)`, :math:`\partial x / \partial \phi =
        -(\partial f / \partial \phi) / f'(x)`."""

        (v0, v1), (s0, s1) = self._ends()
        B, eps = self.bound, self.eps
        y_ = y.detach()
        t = solve_unit(y_, self.theta, self._polygon(y_), eps, self.iterations)
        x = (2 * t - 1) * B
        if isinstance(v0, Tensor):
            v0, v1, s0, s1 = v0.detach(), v1.detach(), s0.detach(), s1.detach()
        x0 = ((y_ - v0) / s0 + eps) * 2 * B - B
        x1 = ((y_ - v1) / s1 - eps + 1) * 2 * B - B
        x = torch.where(y_ <= v0, x0, torch.where(y_ >= v1, x1, x))
        if not torch.is_grad_enabled():
            return x
        fx, dfx = self.value_and_derivative(x)
        step = (y - fx) / dfx
        return x + (step - step.detach())


@register_pytree_class(children=("theta",), static=("bound", "eps", "iterations"))
class BoundedBernsteinTransform(BernsteinTransform):
    r"""Bernstein polynomial transform mapping :math:`[-B, B]` onto itself, (nearly) the
    identity outside.

    The coefficients are :math:`\theta_0 = -B` plus a cumulative sum of increments: two
    fixed increments :math:`\delta = 2B / (K + 4)` at each end (so that :math:`f' = 1`
    and :math:`f'' = 0` at the bounds) around :math:`(2B - 4\delta) \operatorname{softmax}(u)`,
    as in Zuko.

    Arguments:
        theta: unconstrained coefficients :math:`u`, shape :math:`(*, K)`.
        bound, eps, iterations: as for :class:`BernsteinTransform`.

    Example:
        >>> t = BoundedBernsteinTransform(torch.randn(3, 17))
        >>> x = 3 * torch.randn(3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-4)
        True
    """

    def _constrain_theta(self, u: Tensor) -> Tensor:
        B = self.bound
        delta = 2 * B / (u.shape[-1] + 4)
        # Coefficients first in memory (planes, which :func:`_poly_unrolled` reads contiguously
        # under ``torch.compile``); the cumulative sums by a product with a constant triangular
        # matrix (``cumsum`` along a transposed layout costs 3 times a network layer on CPU).
        # One formula eagerly and compiled, so that sampling agrees bit for bit.
        K = u.shape[-1]
        lower = torch.ones(K, K, dtype=u.dtype, device=u.device).tril()  # lower[k, j] = [j <= k]
        rows = torch.exp(u - u.amax(dim=-1, keepdim=True)).reshape(-1, K)  # the softmax, unnormalized
        cum = (lower @ rows.mT).reshape(K, *u.shape[:-1])
        cum = cum * ((2 * B - 4 * delta) / cum[-1])
        ones = torch.ones_like(cum[:2])
        lead = -B + 2 * delta + cum
        planes = torch.cat((torch.stack((-B * ones[0], (delta - B) * ones[1])), lead[:1] - cum[:1], lead,
                            torch.stack((lead[-1] + delta, lead[-1] + 2 * delta))), dim=0)
        return planes.movedim(0, -1)

    def _ends(self) -> tuple[tuple[float, float], tuple[float, float]]:
        B = self.bound
        return (-B, B), (2 * B, 2 * B)  # numbers, not tensors: no constant to make per call
