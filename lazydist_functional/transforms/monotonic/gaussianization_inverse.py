r"""The inverse of the Gaussianization transform for shared parameters: a tabulated
initial guess, polished by bracketed Newton steps on the log tail mass.

With :math:`u_k = e^{a_k} x + b_k` and the mixture CDF :math:`m(x) = \frac1K \sum_k
\Phi(u_k)`, the transform is :math:`f(x) = \Phi^{-1}((1 - c) m(x) + c / 2)`, so
:math:`f(x) = y` iff :math:`m(x) = \Phi(z)` with the *unclipped quantile*

.. math:: z = \Phi^{-1}\left(\frac{\Phi(y) - c/2}{1 - c}\right) \quad (z = y \text{ if } c = 0).

**Table.** When the parameters are shared by many targets (an unconditional flow: shape
:math:`(D, K)` against targets :math:`(N, D)`), the inverse is tabulated once per
parameter set at the nodes :math:`x = \mu_k + \sigma_k t_j`, sorted (each component's
mean :math:`\mu_k = -b_k e^{-a_k}` and scale :math:`\sigma_k = e^{-a_k}`, :math:`t_j`
evenly spaced in :math:`[-T, T]`, :math:`T = 6`): every component is resolved at its own
scale. The table's variable is not :math:`z` (whose :math:`\Phi^{-1}` costs as much as the
rest) but the cheap monotone

.. math:: \zeta = \pm \left(\sqrt{2 \ell + C^2} - C\right), \qquad
    \ell = -\log 2 \min(\Phi(z), \Phi(-z)), \quad C = \sqrt{2 / \pi},

(:math:`\zeta = z + O(z^2)` at 0, :math:`|\zeta| \approx |z|` far out), computed from the
target tail mass by a ``log`` and a ``sqrt``. Between two nodes :math:`x(\zeta)` is the
cubic Hermite interpolant of the values and slopes :math:`dx/d\zeta`; beyond the ends it
is continued linearly with slope :math:`\sigma_{\max}` (far out the widest component
dominates and :math:`x` is nearly affine in :math:`\zeta`). The node pair around
:math:`\zeta` brackets the root; outside the table the far end is :math:`x_0 +
\sigma_{\max} (\zeta - C + T)` below and :math:`x_{G-1} + \sigma_{\max} (\zeta + C - T)`
above (each component alone has its root at :math:`\mu_k + \sigma_k z`, the mixture's
lies between the extreme ones, and :math:`|z| \le |\zeta| + C`).

**Without a table** (parameters not shared: a conditional flow's per-sample parameters)
the components' own roots give the start and a proven bracket (:func:`component_bracket`),
and ``iterations`` bracketed steps follow (:func:`newton_steps`).

**Newton.** Steps on the log tail mass of the nearer tail,
:math:`h(x) = \mp \log \frac1K \sum_k \Phi(\mp u_k)` (:math:`\pm` the sign of :math:`y`),
increasing and well conditioned far into the tails (one ``erfc`` and one ``exp`` per
component, no :math:`\Phi^{-1}`), towards :math:`\mp \log M`, :math:`M = \frac{\Phi(-|y|)
- c/2}{1 - c}`. By default (no gradients) one plain step from the tabulated guess, kept
in the bracket; ``iterations`` more are bracketed (a step that leaves the bracket is
replaced by bisection). With gradients enabled the last step is differentiable, from the
detached refined root, which gives exact implicit-function-theorem gradients.

Layout: :func:`solve` flattens the targets to :math:`(n, M)` (:math:`n` parameter sets,
:math:`M` targets each) and the component arrays to :math:`(K, n, M)`, so that every
elementwise operation, the sum over components and the table search run on contiguous
memory. Everything is a fixed sequence of tensor operations (no data-dependent control
flow): ``vmap``, ``jacrev`` and ``torch.compile`` apply.

Example:
    >>> shift, log_scale = torch.randn(3, 8), torch.randn(3, 8)
    >>> x = torch.randn(100, 3)
    >>> u = x[..., None] * log_scale.exp() + shift
    >>> y = torch.special.ndtri(torch.special.ndtr(u).mean(-1))  # f(x) for c = 0
    >>> bool(((solve(y, shift, log_scale, clip=0.0) - x).abs() < 1e-4).all())
    True
"""

from __future__ import annotations

__all__ = ["Table", "TailProblem", "component_bracket", "implicit_step", "last_step", "newton_delta", "newton_step",
           "newton_steps", "solve", "table_guess", "tabulate", "tabulated_step", "tail_problem"]

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .normal_tails import log_ndtr, ndtri

_SQRT_HALF = math.sqrt(0.5)
_ERFC_CAP = 9.0  # erfc(9) = 4e-37 and exp(-81) = 7e-36 stay normal in float32
_C = math.sqrt(2 / math.pi)  # zeta = z + O(z^2) at 0
_LOG_C = 0.5 * math.log(math.pi / 2)  # log sqrt(pi / 2): folds the Newton step's constant into its density


class Table(NamedTuple):
    r"""Tabulated inverse for :math:`n` parameter sets of :math:`G` nodes each.

    ``z``: the nodes' :math:`\zeta(x_g)` (see the module), increasing, shape :math:`(n, G)`;
    ``rows``: per interval (:math:`G + 1` per set: below, between and above the nodes)
    the anchor :math:`z_0`, the bracket as lines :math:`l_0 + l_1 z` and :math:`h_0 + h_1 z`,
    and the cubic :math:`c_0 + s (c_1 + s (c_2 + s c_3))` in :math:`s = z - z_0`, shape
    :math:`(9, n, G + 1)`; ``newton`` (optional): the parameters of the tabulated Newton
    step (:func:`tabulated_step`), :math:`e^{a_k} / \sqrt 2`, :math:`b_k / \sqrt 2` and
    :math:`a_k - \log \sqrt{\pi / 2}`, shape :math:`(3, K, n, 1)`."""

    z: Tensor
    rows: Tensor
    newton: Tensor | None = None


def tabulate(shift: Tensor, log_scale: Tensor, nodes: int = 16, reach: float = 6.0) -> Table:
    r"""Tabulates :math:`x(\zeta)` for parameters of shape :math:`(n, K)` at ``nodes`` points
    per component, evenly spaced over ``reach`` standard deviations on each side of its
    mean. The parameters are detached (the table only gives the start and the bracket).

    Returns the nodes' :math:`\zeta` and the rows of the :math:`G + 1` intervals (see the
    module's description; outside the table the bracket's far end is the widest
    component's line)."""

    b, a = shift.detach(), log_scale.detach()
    n, K = b.shape
    scale = torch.exp(a)
    t = torch.linspace(-reach, reach, nodes, dtype=b.dtype, device=b.device)
    x = torch.sub(t, b[..., None]).div_(scale[..., None]).view(n, K * nodes).sort(dim=-1).values  # (n, G)
    # the Newton step's parameters, components first (K, n, 1); also this function's
    newton = torch.stack([scale * _SQRT_HALF, b * _SQRT_HALF, a - _LOG_C]).transpose(1, 2)[..., None]
    slope, offset, log_scale = newton.unbind()
    # v = u / sqrt 2, (K, n, G), clamped where a component's CDF is 0 or 1 to float
    # precision (no subnormals); most operations below in place on fresh temporaries
    v = torch.addcmul(offset, x, slope).clamp_(-12.0 * _SQRT_HALF, 12.0 * _SQRT_HALF)
    p = torch.neg(v).erfc_().sum(dim=0)  # 2K m(x)
    q = torch.special.erfc(v).sum(dim=0)  # 2K (1 - m(x))
    density = torch.addcmul(log_scale, v, v, value=-1).exp_().sum(dim=0)  # K 2 m'(x)
    tail = torch.minimum(p, q)  # 2K min(m, 1 - m)
    root = torch.log(tail).mul_(-2).add_(2 * math.log(K) + _C * _C).sqrt_()  # |zeta| + C
    z = (root - _C).copysign_(p.sub_(q))  # zeta
    slope = root.mul_(tail).div_(density)  # dx/dzeta
    # Cubic Hermite in z on each interval (one of zero width, where m is flat in floating
    # point, is never selected): with e0 = delta - d0, e1 = d1 - delta,
    # c2 = (2 e0 - e1) / h, c3 = (e1 - e0) / h^2.
    z0, x0, d0 = z[:, :-1], x[:, :-1], slope[:, :-1]
    h = (z[:, 1:] - z0).clamp_min_(torch.finfo(z.dtype).tiny)
    delta = (x[:, 1:] - x0).div_(h)
    e0 = delta - d0
    e = (slope[:, 1:] - delta).sub_(e0)  # e1 - e0
    zero = torch.zeros_like(z0)
    inner = torch.stack([z0, x0, zero, x[:, 1:], zero, x0, d0, (e0 - e).div_(h), e.div_(h).div_(h)])  # (9, n, G - 1)
    # Outside: linear continuation with the widest component's slope (the asymptotic one:
    # far out the mixture's tail is that component's), bracketed by the end node and
    # that component's line.
    s_max = scale.amin(dim=-1, keepdim=True).reciprocal_()
    zero = zero[:, :1]
    x_first, x_last = x[:, :1], x[:, -1:]
    below = torch.stack([z[:, :1], torch.add(x_first, s_max, alpha=reach - _C), s_max, x_first,
                         zero, x_first, s_max, zero, zero])
    above = torch.stack([z[:, -1:], x_last, zero, torch.add(x_last, s_max, alpha=_C - reach), s_max, x_last, s_max,
                         zero, zero])
    return Table(z, torch.cat([below, inner, above], dim=-1), newton)


def table_guess(table: Table, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""The interpolated :math:`x(z)` and a bracket :math:`[l, h]` of the root, for
    quantiles ``z`` of shape :math:`(n, M)`."""

    index = torch.searchsorted(table.z, z, right=True)
    z0, l0, l1, h0, h1, c0, c1, c2, c3 = torch.gather(table.rows, 2, index.expand(9, *index.shape))
    s = z - z0
    guess = torch.addcmul(c0, s, torch.addcmul(c1, s, torch.addcmul(c2, s, c3)))
    lo, hi = torch.addcmul(l0, z, l1), torch.addcmul(h0, z, h1)
    return torch.clamp(guess, lo, hi), lo, hi


def component_bracket(y: Tensor, shift: Tensor, log_scale: Tensor, clip: float) -> tuple[Tensor, Tensor, Tensor]:
    r"""Without a table (parameters not shared, e.g. a conditional flow): a guess and a
    bracket of the root from the components' own roots :math:`x_k = (z - b_k) e^{-a_k}`
    (:math:`u_k(x_k) = z`, the unclipped quantile, here exact: one :math:`\Phi^{-1}` per
    target). At :math:`\min_k x_k` every :math:`u_k \le z`, so :math:`m \le \Phi(z)`, and at
    :math:`\max_k x_k` the reverse: the root lies between them. The guess is their mean.
    Targets :math:`(n, M)`, parameters :math:`(n, K)`; everything detached."""

    y, b, a = y.detach(), shift.detach(), log_scale.detach()
    if clip > 0:
        # the shrunk tail mass (Phi(-|y|) - c/2) / (1 - c), of the sign of y
        mass = (torch.special.erfc(y.abs() * _SQRT_HALF) - clip) * (0.5 / (1 - clip))
        z = ndtri(mass.clamp(torch.finfo(y.dtype).tiny, 0.5)).abs().copysign(y)
    else:
        z = y
    roots = (z - b.T[..., None]) * torch.exp(-a).T[..., None]  # (K, n, M)
    return roots.mean(dim=0), roots.amin(dim=0), roots.amax(dim=0)


class TailProblem(NamedTuple):
    r"""The equation :math:`h(x) = \mp \log M` of the nearer tail for targets of shape
    :math:`(n, M)`, :math:`\pm` the sign of :math:`y`, :math:`h(x) = \mp \log \frac1K
    \sum_k \Phi(\mp u_k) = \mp \log \frac{1}{2K} \sum_k \mathrm{erfc}\, w_k` with
    :math:`w_k = \pm u_k / \sqrt 2 = x \cdot \text{slope}_k + \text{offset}_k`.

    ``sign``; ``level`` :math:`\log(2 K M)` (:math:`M` the target tail mass, clamped to
    the smallest normal number when :math:`y` lies outside the image of :math:`f`); ``z``
    the unclipped quantile (detached); ``slope`` :math:`\pm e^{a_k} / \sqrt 2` and
    ``offset`` :math:`\pm b_k / \sqrt 2`, shape :math:`(K, n, M)`; ``log_scale``
    :math:`a_k`, shape :math:`(K, n, 1)` (the density's terms are
    :math:`e^{a_k - w_k^2} = \sqrt 2 |\text{slope}_k| e^{-w_k^2}`, one ``exp`` each)."""

    sign: Tensor
    level: Tensor
    z: Tensor
    slope: Tensor
    offset: Tensor
    log_scale: Tensor

    def detach(self) -> TailProblem:
        return TailProblem(*(t.detach() for t in self))


def tail_problem(y: Tensor, shift: Tensor, log_scale: Tensor, clip: float) -> TailProblem:
    r"""The :class:`TailProblem` of :math:`f(x) = y` for targets :math:`(n, M)` and
    parameters :math:`(n, K)` (differentiable in all); for ``clip`` 0 in log space, so
    that :math:`|y|` far beyond 13 keeps its tail mass."""

    K = shift.shape[-1]
    sign = torch.ones((), dtype=y.dtype, device=y.device).copysign(y)
    if clip > 0:
        # 2K (Phi(-|y|) - c/2) / (1 - c)
        mass = (torch.special.erfc(y.abs() * _SQRT_HALF) - clip) * (K / (1 - clip))
        level = torch.log(mass.clamp_min(2 * K * torch.finfo(y.dtype).tiny))
    else:
        level = log_ndtr(-y.abs()) + math.log(2 * K)
    # zeta = +-(sqrt(2 l + C^2) - C), l = -log(2 M) = log K - level
    root = torch.sqrt(level.detach() * -2 + (2 * math.log(K) + _C * _C))
    z = (root - _C) * sign
    slope = (torch.exp(log_scale) * _SQRT_HALF).T[..., None]  # (K, n, 1)
    offset = (shift * _SQRT_HALF).T[..., None]
    return TailProblem(sign, level, z, slope * sign, offset * sign, log_scale.T[..., None])


def newton_delta(p: TailProblem, x: Tensor, log_space: bool = False) -> Tensor:
    r"""The Newton step :math:`-(h(x) - \text{target}) / h'(x)` at ``x``. With :math:`S =
    \sum_k \mathrm{erfc}\, w_k` and :math:`D = \sum_k \text{slope}_k e^{-w_k^2}` (of the
    sign of :math:`y`), :math:`h - \text{target} = \mp(\log S - \text{level})` and
    :math:`h' = \pm \frac{2}{\sqrt\pi} D / S`, so the step is
    :math:`\frac{\sqrt\pi}{2} (\log S - \text{level}) S / D`. In linear space :math:`w_k`
    is capped at 9 (contributions below :math:`10^{-36}`, never subnormal: subnormal
    arithmetic is ten times slower on CPUs); with ``log_space`` the sums are taken in log
    space, :math:`\log \mathrm{erfc}\, w = \log 2 + \log \Phi(-\sqrt 2 w)`."""

    w = torch.addcmul(p.offset, x, p.slope)  # (K, n, M)
    if log_space:
        log_mass = torch.logsumexp(log_ndtr(w * -math.sqrt(2)), dim=0) + math.log(2)
        log_density = torch.logsumexp(p.log_scale - w * w, dim=0)  # log(sqrt 2 |D|)
        return (log_mass - p.level) * torch.exp(log_mass - log_density) * (p.sign * math.sqrt(math.pi / 2))
    w = w.clamp_max(_ERFC_CAP)
    mass = torch.special.erfc(w).sum(dim=0)
    density = torch.exp(torch.addcmul(p.log_scale, w, w, value=-1)).sum(dim=0)  # sqrt 2 |D|
    return (torch.log(mass) - p.level) * mass / density * (p.sign * math.sqrt(math.pi / 2))


def newton_step(p: TailProblem, x: Tensor, lo: Tensor, hi: Tensor,
                log_space: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r"""One bracketed Newton step from ``x`` in :math:`[l, h]`: the bracket is narrowed to
    the side of the root (the direction of the step), and a step that leaves it is
    replaced by bisection."""

    delta = newton_delta(p, x, log_space)
    up = delta > 0
    lo, hi = torch.where(up, x, lo), torch.where(up, hi, x)
    step = x + delta
    return torch.where(torch.clamp(step, lo, hi) == step, step, torch.lerp(lo, hi, 0.5)), lo, hi


def newton_steps(p: TailProblem, x: Tensor, lo: Tensor, hi: Tensor, iterations: int,
                 log_space: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r"""``iterations`` bracketed Newton steps (as :func:`newton_step`), where a step that
    crosses more than half of the narrowed bracket is replaced by bisection too: steps
    bouncing between the two sides of a kink of :math:`h` (components of very different
    scales) would otherwise shrink the bracket arbitrarily slowly. Returns the last point
    and the bracket."""

    for _ in range(iterations):
        delta = newton_delta(p, x, log_space)
        up = delta > 0
        lo, hi = torch.where(up, x, lo), torch.where(up, hi, x)
        step = x + delta
        newton = (torch.clamp(step, lo, hi) == step) & (2 * delta.abs() <= hi - lo)
        x = torch.where(newton, step, torch.lerp(lo, hi, 0.5))
    return x, lo, hi


def implicit_step(p: TailProblem, x: Tensor, lo: Tensor, hi: Tensor, log_space: bool = False) -> Tensor:
    r"""One last Newton step from ``x`` (detached), kept when it is finite and stays in the
    bracket :math:`[l, h]`, with the implicit-function-theorem gradients w.r.t. :math:`y` and
    the parameters at that refined point :math:`x^\star`: those of
    :math:`x^\star - (h_\theta(x^\star) - \text{target}(y)) / h_\theta'(x^\star)`
    (:math:`\partial x / \partial y = 1 / f'(x^\star)`, since :math:`h(x) =
    \text{target}(f(x))`). Gradients flow wherever :math:`x^\star` is a root to within
    :math:`\sqrt{\epsilon} (1 + |x^\star|)` (the Newton step there), whether or not the
    last step was kept (at convergence the bracket may have shrunk to a point, which
    rejects even a step of one ulp); elsewhere (a saturated target, no root) no gradient,
    the lanes masked before the differentiable evaluation so that no NaN flows back."""

    value, _ = last_step(p, x, lo, hi, log_space)
    residual = newton_delta(p.detach(), value, log_space)
    tol = math.sqrt(torch.finfo(value.dtype).eps) * (1 + value.abs())
    root = torch.isfinite(residual) & (residual.abs() <= tol)
    masked = TailProblem(p.sign, torch.where(root, p.level, 0), p.z, p.slope, p.offset, p.log_scale)
    step = newton_delta(masked, torch.where(root, value, 0), log_space)
    return value + torch.where(root, step - step.detach(), 0)


def last_step(p: TailProblem, x: Tensor, lo: Tensor, hi: Tensor, log_space: bool = False) -> tuple[Tensor, Tensor]:
    r"""The value of :func:`implicit_step` (bit for bit, without its gradients): one Newton
    step from ``x`` (detached), kept when it is finite and stays in :math:`[l, h]`; and
    where it was kept."""

    x = x.detach()
    refined = x + newton_delta(p.detach(), x, log_space)
    accept = torch.isfinite(refined) & (refined >= lo) & (refined <= hi)
    return torch.where(accept, refined, x), accept


def tabulated_step(y: Tensor, table: Table, clip: float) -> Tensor:
    r"""The default sampling path (no gradients, ``clip`` :math:`> 0`, ``iterations`` 0):
    the tabulated guess and one plain Newton step on the log tail mass, kept in the
    bracket, for targets :math:`(n, M)`; the values of :func:`tail_problem`,
    :func:`table_guess` and :func:`newton_delta` (to rounding: the constant
    :math:`\sqrt{\pi / 2}` sits in the density's exponent) in fewer operations, most of
    them in place on fresh temporaries (each one's operands depend on the targets, or on
    the targets and the parameters, so that ``vmap`` over either batches ``self``). The
    Newton parameters come from ``table.newton``."""

    assert table.newton is not None
    slope, offset, log_scale = table.newton.unbind()
    K = slope.shape[0]
    # level log(2K M), M = (Phi(-|y|) - c/2) / (1 - c); zeta = +-(sqrt(2 log K + C^2 - 2 level) - C)
    level = (y.abs().mul_(_SQRT_HALF).erfc_().sub_(clip).mul_(K / (1 - clip))
             .clamp_min_(2 * K * torch.finfo(y.dtype).tiny).log_())
    sign = torch.ones((), dtype=y.dtype, device=y.device).copysign(y)
    z = (level * -2).add_(2 * math.log(K) + _C * _C).sqrt_().sub_(_C).mul_(sign)
    x, lo, hi = table_guess(table, z)
    w = torch.addcmul(offset, x, slope).mul_(sign).clamp_max_(_ERFC_CAP)  # (K, n, M)
    density = torch.addcmul(log_scale, w, w, value=-1).exp_().sum(dim=0)  # sqrt(2 / pi) |D|
    mass = w.erfc_().sum(dim=0)
    return x.add_(torch.log(mass).sub_(level).mul_(mass).div_(density).mul_(sign)).clamp_(lo, hi)


def _flatten(y: Tensor, shift: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[int, ...]]:
    r"""Targets as :math:`(n, M)` and parameters as :math:`(n, K)`, :math:`n` the number of
    parameter sets, and the targets' broadcast shape."""

    if shift.shape != log_scale.shape:
        shift, log_scale = torch.broadcast_tensors(shift, log_scale)
    P, K = shift.shape[:-1], shift.shape[-1]
    batch = y.shape
    if batch[len(batch) - len(P):] != P or len(batch) < len(P):
        batch = torch.broadcast_shapes(batch, P)
        P = batch[len(batch) - len(P):]
        y, shift, log_scale = y.expand(batch), shift.expand(*P, K), log_scale.expand(*P, K)
    n = math.prod(P)
    if shift.dim() != 2:
        shift, log_scale = shift.reshape(n, K), log_scale.reshape(n, K)
    return y.reshape(-1, n).T.contiguous(), shift, log_scale, tuple(batch)


def solve(y: Tensor, shift: Tensor, log_scale: Tensor, clip: float, nodes: int = 16, iterations: int = 0,
          table: Table | None = None, tabulated: bool = True) -> Tensor:
    r"""Solves :math:`f(x) = y` for parameters of shape :math:`(*P, K)` shared by targets
    ``y`` whose shape ends with :math:`P` (up to broadcasting): the tabulated guess (or,
    with ``tabulated=False``, the :func:`component_bracket`), then ``iterations``
    bracketed Newton steps and one last step; with gradients enabled at least one
    bracketed step, then :func:`implicit_step` (exact gradients at the refined root).
    ``table``: :func:`tabulate` of the parameters as :math:`(n, K)`, if already computed."""

    y, shift, log_scale, batch = _flatten(y, shift, log_scale)
    log_space = clip == 0
    if tabulated and not log_space and iterations == 0 and not torch.is_grad_enabled():
        if table is None or table.z.shape[0] != shift.shape[0] or table.newton is None:
            table = tabulate(shift, log_scale, nodes)
        return tabulated_step(y, table, clip).T.reshape(batch)
    p = tail_problem(y, shift, log_scale, clip)
    if not tabulated:
        x, lo, hi = component_bracket(y, shift, log_scale, clip)
    else:
        if table is None or table.z.shape[0] != shift.shape[0]:
            table = tabulate(shift, log_scale, nodes)
        x, lo, hi = table_guess(table, p.z)
    if torch.is_grad_enabled():
        # one step more than without gradients: they are exact at a converged root
        x, lo, hi = newton_steps(p.detach(), x, lo, hi, max(iterations, 1), log_space)
        x = implicit_step(p, x, lo, hi, log_space)
    elif iterations > 0:  # the same value as with gradients
        x, lo, hi = newton_steps(p.detach(), x, lo, hi, iterations, log_space)
        x = last_step(p, x, lo, hi, log_space)[0]
    else:  # one plain step, kept in the bracket
        x = torch.clamp(x + newton_delta(p, x, log_space), lo, hi)
    return x.T.reshape(batch)
