r"""Bernstein polynomial transforms (BPF's univariate transforms)."""

from __future__ import annotations

__all__ = ["BernsteinTransform", "BoundedBernsteinTransform"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C._functorch import _add_batch_dim

from ...functorch_levels import batching_level, is_batched_at, physical
from ...pytree import register_pytree_class
from .base import MonotonicTransform
from .bernstein_inverse import _constants, solve_unit


def _poly_planes(t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    r"""The Bernstein polynomial's value and slope (in unit coordinates) at :math:`t \in (0, 1)`
    from one basis of degree :math:`M - 1`, with :math:`b_i = \binom{M-1}{i} t^i (1-t)^{M-1-i}`
    and :math:`\Delta_i = \theta_{i+1} - \theta_i`:

    .. math:: p(t) = \sum_{i<M} b_i \theta_i + t \sum_{i<M} b_i \Delta_i, \qquad
        p'(t) = M \sum_{i<M} b_i \Delta_i

    (degree elevation: :math:`B_{i,M} = (1 - t) B_{i,M-1} + t B_{i-1,M-1}`). The basis is built
    in log space, coefficient index first (planes: the products and the sums over it are
    element-wise and vectorized), which is where the coefficients of
    :class:`BoundedBernsteinTransform` lie in memory. ``theta``: shape :math:`(*, M + 1)`,
    broadcastable against ``t``.

    Example:
        >>> _poly_planes(torch.tensor([0.25]), torch.tensor([[0.0, 1.0, 2.0]]))  # 2t, 2
        (tensor([0.5000]), tensor([2.]))
    """

    M = theta.shape[-1] - 1
    nd = max(t.dim(), theta.dim() - 1)
    t = t.reshape((1,) * (nd - t.dim()) + t.shape)
    planes = theta.movedim(-1, 0)
    planes = planes.reshape(planes.shape[:1] + (1,) * (nd - theta.dim() + 1) + planes.shape[1:])
    # The powers and binomial coefficients as one constant (``torch.compile`` would
    # otherwise fuse and recompute the ``lgamma``\ s for every element).
    i, rest, log_binom = torch.tensor(_constants(M - 1), dtype=t.dtype, device=t.device).reshape(3, M, *(1,) * nd)
    # (Under ``vmap``, ``addcmul``'s batching rule cost 8 times the operation in a profile:
    # :class:`BernsteinTransform` calls this on the physical tensors there.)
    basis = torch.exp(torch.addcmul(torch.addcmul(log_binom, i, torch.log(t)), rest, torch.log1p(-t)))
    low = planes[:-1]
    s1 = (basis * low).sum(dim=0)
    s2 = (basis * (planes[1:] - low)).sum(dim=0)
    return s1 + t * s2, M * s2


def _poly_unrolled(t: Tensor, theta: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    r"""The Bernstein polynomial's value and slope at :math:`t`, as :func:`_poly_planes`, from its
    coefficients :math:`\theta_0, \dots, \theta_M` (a tuple of tensors), the basis built from the
    powers of :math:`t` and :math:`1 - t` by products: the schedule for ``torch.compile``, which
    fuses it into one element-wise kernel.

    Example:
        >>> t = torch.tensor([0.25])
        >>> theta = (torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0]))
        >>> _poly_unrolled(t, theta)  # f(t) = 2t, f'(t) = 2
        (tensor([0.5000]), tensor([2.]))
    """

    M = len(theta) - 1
    s = 1 - t
    tp, sp = [1.0, t], [1.0, s]
    for _ in range(M - 2):
        tp.append(tp[-1] * t)
        sp.append(sp[-1] * s)
    s1, s2 = 0.0, 0.0
    for i in range(M):
        b = math.comb(M - 1, i) * tp[i] * sp[M - 1 - i]
        s1 = s1 + b * theta[i]
        s2 = s2 + b * (theta[i + 1] - theta[i])
    return s1 + t * s2, M * s2


def _physical(t: Tensor, level: int, rank: int) -> Tensor:
    r"""``t`` below the ``vmap`` of ``level`` (vmapped dim first where batched), its own dims
    padded on the left to ``rank``, so that it broadcasts behind the vmapped dim."""

    pad = (1,) * (rank - t.dim())
    if is_batched_at(t, level):
        p = physical(t, level)
        return p.reshape(p.shape[:1] + pad + p.shape[1:])
    return t.reshape(pad + t.shape)


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
        # Row by row along the last dim: under a ``vmap`` batching ``theta``, on the physical tensor.
        level = batching_level(theta)
        if level is None:
            self.theta = self._constrain_theta(theta)
        else:
            self.theta = _add_batch_dim(self._constrain_theta(physical(theta, level)), 0, level)

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

        return _poly_planes(t, self.theta)

    def _ends(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        r"""Values and unit-coordinate slopes at :math:`t = \epsilon` and :math:`1 - \epsilon`."""

        batch = self.theta.shape[:-1]
        (v0, s0), (v1, s1) = (self._poly(self.theta.new_full(batch, end)) for end in (self.eps, 1 - self.eps))
        return (v0, v1), (s0, s1)

    def _jump(self) -> float:
        r"""What the extrapolation adds beyond the ends to the tangent lines of the polynomial at
        :math:`t = \epsilon, 1 - \epsilon` (times the sign of :math:`t - \epsilon`, resp.
        :math:`t - 1 + \epsilon`): none here."""

        return 0.0

    def value_and_derivative(self, x: Tensor, unrolled: bool = False) -> tuple[Tensor, Tensor]:
        return self._evaluate(x, self.theta, unrolled)

    def _evaluate(self, x: Tensor, theta: Tensor, unrolled: bool) -> tuple[Tensor, Tensor]:
        # The polynomial at t clamped into [eps, 1 - eps], continued by its tangent line there:
        # inside, t - inside = 0 and the value is the polynomial's; beyond the ends, the tangent
        # lines at the ends (no ``where``: the slope at the clamped point is the extrapolation's).
        B, eps = self.bound, self.eps
        t = (x + B) / (2 * B)
        inside = t.clamp(eps, 1 - eps)
        inner, slope = _poly_unrolled(inside, theta.unbind(-1)) if unrolled else _poly_planes(inside, theta)
        beyond = t - inside
        y = inner + slope * beyond
        jump = self._jump()
        if jump:
            y = torch.add(y, torch.sign(beyond), alpha=jump)
        return y, slope / (2 * B)

    def f(self, x: Tensor) -> Tensor:
        return self.value_and_derivative(x)[0]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Under ``torch.compile`` the forward evaluates the polynomial unrolled (the inverse, hence
        # sampling, keeps one schedule; the coefficients agree with the eager ones to rounding).
        # Under a ``vmap`` that batches x or the coefficients (e.g. over parameter sets), on the
        # physical tensors below it, the results wrapped back at its level.
        level = batching_level(x, self.theta)
        if level is not None:
            rank = max(x.dim(), self.theta.dim() - 1)
            y, dy = self._evaluate(_physical(x, level, rank), _physical(self.theta, level, rank + 1), False)
            return _add_batch_dim(y, 0, level), _add_batch_dim(dy.log(), 0, level)
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
        K = u.shape[-1]
        delta = 2 * B / (K + 4)
        # Coefficients first in memory (planes: :func:`_poly_planes` and :func:`_poly_unrolled`
        # read them contiguously). With the softmax's terms e_k (max-shifted),
        # theta = alpha + (2B - 4 delta) (A e) / sum(e), A[i, k] = [k <= i - 3] (the cumulative sums
        # behind 3 fixed coefficients; the last row, all ones, is the sum) and
        # alpha = -B + delta (0, 1, 2, ..., 2, 3, 4): one product with a constant, which also
        # transposes the rows into planes (``cumsum`` along planes costs 8 times as much on CPU,
        # a transposing copy of u twice as much at N = 16384; no ``cat``).
        lower = torch.ones(K + 5, K, dtype=u.dtype, device=u.device).tril(-3)
        if u.is_contiguous():
            rows = torch.exp(u - u.amax(dim=-1, keepdim=True)).reshape(-1, K)
            cum = lower @ rows.mT
        else:
            # Laid out otherwise (under a vmap over parameter sets, the batched linear layer's
            # output has the samples innermost), the one copy is into planes: its reductions along
            # the planes are vectorized, those along a strided last dimension are not.
            planes = u.movedim(-1, 0).contiguous()
            cum = lower @ torch.exp(planes - planes.amax(dim=0)).reshape(K, -1)
        alpha = [-B, delta - B] + [2 * delta - B] * (K + 1) + [3 * delta - B, 4 * delta - B]
        alpha = torch.tensor(alpha, dtype=u.dtype, device=u.device)[:, None]
        theta = alpha + cum * ((2 * B - 4 * delta) / cum[-1])
        return theta.reshape(K + 5, *u.shape[:-1]).movedim(0, -1)

    def _jump(self) -> float:
        # Zuko's lines beyond the ends, 2B (t - eps) - B and 2B (t - 1 + eps) + B, against the
        # polynomial's tangent lines there (p(eps) = -B + 2B eps + O(eps^3), p'(eps) = 2B + O(eps^2)).
        return 2 * self.bound * self.eps

    def _ends(self) -> tuple[tuple[float, float], tuple[float, float]]:
        B = self.bound
        return (-B, B), (2 * B, 2 * B)  # numbers, not tensors: no constant to make per call
