r"""Fixed-iteration root finding for monotonic functions, safe under ``torch.func``.

:func:`newton_bisection` solves :math:`f(x) = y` element-wise for an increasing
:math:`f` by Newton's method safeguarded by a bracket :math:`[l, h]`. The initial
interval only sets where the search starts: an end is *proven* once :math:`f` there is
known to lie on its side of :math:`y`; an unproven end that the root lies beyond is
probed and pushed out geometrically (:math:`x \pm 2 \max(|x|, s)`), and Newton steps
towards it are capped to that length, so the root is found wherever :math:`f` is
defined (never clamped to a guessed interval) in a few evaluations. A Newton step
:math:`x - (f(x) - y) / f'(x)` is taken when it stays inside the proven bracket and at
least halves the step before last (the rule of Numerical Recipes' ``rtsafe``, which
rules out slow crawling and cycling); otherwise the bracket is bisected. The evaluated
point with the smallest residual is returned; if every evaluation fell on one side of
:math:`y` (no root within the reach of the iterations, e.g. :math:`y` outside the image of
:math:`f`), the search *saturates*: it returns the farthest point evaluated on that side,
monotone in :math:`y`, with zero gradient. The number of iterations is fixed and
there is no data-dependent control flow, so it works under :func:`torch.func.vmap` and
:func:`torch.compile`; from a good initial guess Newton's quadratic convergence makes a
few iterations enough.

Gradients flow by the implicit function theorem: the iterations run on detached
values and one differentiable Newton step from the detached root :math:`x^\star`

.. math:: x = x^\star - \frac{f_\theta(x^\star) - y}{f_\theta'(x^\star)}

gives :math:`\partial x / \partial \theta = -(\partial f / \partial \theta) / f'` and
:math:`\partial x / \partial y = 1 / f'` at the solution (exact first-order
gradients, whatever the number of iterations). No ``torch.autograd.grad``,
no ``requires_grad_`` and no custom ``autograd.Function``: everything is plain
tensor ops, so ``grad``, ``vmap(grad)``, ``jacrev`` and ``jacfwd`` compose.
"""

from __future__ import annotations

__all__ = ["detach_tree", "newton_bisection", "value_and_derivative"]

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from .pytree import tree_map

T = TypeVar("T")


def value_and_derivative(f: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Returns :math:`f(x)` and the element-wise derivative :math:`f'(x)` of an
    element-wise function, by forward-mode AD (:func:`torch.func.jvp`)."""

    return torch.func.jvp(f, (x,), (torch.ones_like(x),))


def detach_tree(tree: T) -> T:
    r"""``tree`` (a pytree, e.g. a :class:`~lazydist_functional.pytree.Partial` or a
    transform) with its tensors detached; other leaves (plain functions) are kept."""

    return tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, tree)


def newton_bisection(
    f_and_df: Callable[[Tensor], tuple[Tensor, Tensor]],
    y: Tensor,
    lower: float | Tensor,
    upper: float | Tensor,
    iterations: int = 16,
    x0: Tensor | None = None,
    implicit: bool = True,
    fixed: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    expand: bool = True,
) -> Tensor:
    r"""Solves :math:`f(x) = y` for an increasing element-wise :math:`f`.

    Arguments:
        f_and_df: returns :math:`(f(x), f'(x))` (analytic, or :func:`value_and_derivative`).
            If it is a pytree (e.g. a :class:`~lazydist_functional.pytree.Partial`), its
            tensors are detached during the iterations.
        y: the targets.
        lower: the lower end :math:`l` of the initial interval (broadcast against ``y``).
        upper: the upper end :math:`h`.
        iterations: the fixed number of safeguarded Newton iterations.
        x0: the initial guess (default: the middle of :math:`[l, h]`).
        implicit: end with one differentiable Newton step from the detached root,
            which gives implicit-function-theorem gradients w.r.t. ``y`` and the
            parameters of ``f``. If ``False`` the result is detached.
        fixed: the same function with its parameters detached, used for the
            iterations (default: ``f_and_df`` with its pytree leaves detached).
        expand: if ``True`` (default), :math:`[l, h]` only sets the scale of the
            search and the root is found outside it too; if ``False`` the solution is
            confined to :math:`[l, h]` (it converges to the nearest end when
            :math:`y \notin [f(l), f(h)]`).

    Returns:
        The solution :math:`x`, with the shape of ``y``: the evaluated point with the
        smallest residual :math:`|f(x) - y|`, refined by the final Newton step when
        ``implicit``; or, when no evaluation reached the far side of :math:`y`, the
        farthest point evaluated (the saturated end, gradient 0).

    Example:
        >>> f = lambda x: (x**3 + x, 3 * x**2 + 1)
        >>> newton_bisection(f, torch.tensor([2.0, -10.0, 2e3]), -1.0, 1.0)
        tensor([ 1.0000, -2.0000, 12.5728])
    """

    y_ = y.detach()
    lower_ = torch.as_tensor(lower, dtype=y.dtype, device=y.device)
    upper_ = torch.as_tensor(upper, dtype=y.dtype, device=y.device)
    scale = ((upper_ - lower_) / 2).abs().clamp_min(torch.finfo(y.dtype).tiny)
    zero = torch.zeros_like(y_)
    # The bracket [lo, hi]; an end is "proven" once f there is known to be on its side
    # of y. Unproven ends (only when expanding) are probed and widened geometrically.
    lo, hi = zero + lower_, zero + upper_
    lo_open = torch.full_like(y_, expand, dtype=torch.bool)  # not proven yet
    hi_open = lo_open
    inf = torch.full_like(y_, float("inf"))
    g = detach_tree(f_and_df) if fixed is None else fixed
    x = zero + ((lower_ + upper_) / 2 if x0 is None else x0.detach())
    if not expand:
        x = torch.minimum(torch.maximum(x, lo), hi)
    tol = 64 * torch.finfo(y.dtype).eps
    width = inf  # the step before last, as in rtsafe
    last = width
    best = inf
    best_x = x
    for _ in range(iterations):
        fx, dfx = g(x)
        r = fx - y_
        r_abs = r.abs()
        # Keep the best evaluated point (False for NaN); on ties the later one, which is
        # the farther one when f is flat in floating point far out (saturation).
        better = r_abs <= best
        best = torch.where(better, r_abs, best)
        best_x = torch.where(better, x, best_x)
        below = r < 0
        lo = torch.where(below, x, lo)
        hi = torch.where(below, hi, x)
        # (Each value computed once, in as few ops as the logic allows: on a GPU, every op is a launch.)
        lo_open = lo_open & ~below
        hi_open = hi_open & below
        x_abs = x.abs()
        jump = 2 * torch.maximum(x_abs, scale)
        hi = torch.where(hi_open & (hi <= lo), lo + jump, hi)  # an unproven end was passed
        lo = torch.where(lo_open & (lo >= hi), hi - jump, lo)
        # Towards an unproven end, move at most as far as the geometric widening would
        # (a first Newton step on a convex f can overshoot by orders of magnitude).
        unproven = torch.where(below, hi_open, lo_open)
        delta = r / dfx
        delta = torch.where(unproven, torch.clamp(delta, -jump, jump), delta)
        step = x - delta
        # Newton if it stays in the proven bracket and at least halves the step before
        # last; otherwise probe the unproven end on the root's side, or bisect.
        delta_abs = delta.abs()
        small = delta_abs <= tol * (1 + x_abs)  # (nearly) converged: keep polishing
        inside = ((step >= lo) | lo_open) & ((step <= hi) | hi_open)
        newton = inside & ((2 * delta_abs <= width) | small) & (step.abs() < inf)  # finite: 2 ops, not 4
        other = torch.where(unproven, torch.where(below, hi, lo), (lo + hi) / 2)
        width = last
        last = torch.where(newton, delta, other - x).abs()
        x = torch.where(newton, step, other)
    x = torch.where(torch.isnan(y_), y_, best_x)  # no root for a NaN target
    saturated = lo_open | hi_open  # every evaluation on one side of y
    if not implicit:
        return x
    fx, dfx = f_and_df(x)
    refined = x - (fx.detach() - y_) / dfx.detach()
    # Value: the refined step when it is short (within the final bracket's width, or
    # 1%) and finite (and inside [l, h] if not expanding), else the root itself;
    # gradient: the implicit one of the Newton step (when finite), except at a saturated
    # end, which is constant in y and the parameters (gradient 0). The step is masked
    # before dividing so that a discarded one (f' = 0) sends no NaN back.
    finite = torch.isfinite(refined)
    accept = finite & ((refined - x).abs() <= (hi - lo) + 1e-2 * (1 + x.abs()))
    if not expand:
        accept = accept & (refined >= lower_) & (refined <= upper_)
    carry = finite & (accept | ~saturated)
    step = x - torch.where(carry, fx - y, torch.zeros_like(fx)) / torch.where(carry, dfx, torch.ones_like(dfx))
    return torch.where(accept, refined, x) + (step - step.detach())
