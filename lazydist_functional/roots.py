r"""Fixed-iteration root finding for monotonic functions, safe under ``torch.func``.

:func:`newton_bisection` solves :math:`f(x) = y` element-wise for an increasing
:math:`f` by Newton's method safeguarded by bisection: it keeps a bracket
:math:`[l, h]` with :math:`f(l) \le y \le f(h)`, takes the Newton step
:math:`x - (f(x) - y) / f'(x)` when it stays inside the bracket and at least halves
the step before last (the rule of Numerical Recipes' ``rtsafe``, which rules out slow
crawling and cycling) and bisects otherwise, and returns the evaluated point with the
smallest residual. It runs a fixed number of iterations with no data-dependent
control flow, so it works under :func:`torch.func.vmap` and :func:`torch.compile`.

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

__all__ = ["newton_bisection", "value_and_derivative"]

from collections.abc import Callable

import torch
from torch import Tensor


def value_and_derivative(f: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Returns :math:`f(x)` and the element-wise derivative :math:`f'(x)` of an
    element-wise function, by forward-mode AD (:func:`torch.func.jvp`)."""

    return torch.func.jvp(f, (x,), (torch.ones_like(x),))


def _detach_tree(fn: Callable) -> Callable:
    r"""``fn`` with the tensors it closes over (if it is a pytree) detached."""

    from .pytree import tree_map

    try:
        return tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, fn)
    except Exception:  # not a pytree of tensors: leave it
        return fn


def newton_bisection(
    f_and_df: Callable[[Tensor], tuple[Tensor, Tensor]],
    y: Tensor,
    lower: float | Tensor,
    upper: float | Tensor,
    iterations: int = 16,
    x0: Tensor | None = None,
    implicit: bool = True,
    fixed: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    r"""Solves :math:`f(x) = y` for an increasing element-wise :math:`f` on :math:`[l, h]`.

    Arguments:
        f_and_df: returns :math:`(f(x), f'(x))` (analytic, or :func:`value_and_derivative`).
            If it is a pytree (e.g. a :class:`~lazydist_functional.pytree.Partial`), its
            tensors are detached during the iterations.
        y: the targets.
        lower: the lower end :math:`l` of the bracket (broadcast against ``y``).
        upper: the upper end :math:`h`.
        iterations: the fixed number of safeguarded Newton iterations.
        x0: the initial guess (default: the middle of the bracket).
        implicit: end with one differentiable Newton step from the detached root,
            which gives implicit-function-theorem gradients w.r.t. ``y`` and the
            parameters of ``f``. If ``False`` the result is detached.
        fixed: the same function with its parameters detached, used for the
            iterations (default: ``f_and_df`` with its pytree leaves detached).

    Returns:
        The solution :math:`x`, with the shape of ``y``: the evaluated point with the
        smallest residual :math:`|f(x) - y|` (then refined by the final Newton step when
        ``implicit``). When :math:`y` lies outside :math:`[f(l), f(h)]` the iterations
        converge to the nearest end.

    Example:
        >>> f = lambda x: (x**3 + x, 3 * x**2 + 1)
        >>> x = newton_bisection(f, torch.tensor([2.0, -10.0]), -10.0, 10.0)
        >>> x
        tensor([ 1., -2.])
    """

    y_ = y.detach()
    lo = torch.as_tensor(lower, dtype=y.dtype, device=y.device).expand_as(y_)
    hi = torch.as_tensor(upper, dtype=y.dtype, device=y.device).expand_as(y_)
    g = _detach_tree(f_and_df) if fixed is None else fixed
    x = (lo + hi) / 2 if x0 is None else torch.minimum(torch.maximum(x0.detach(), lo), hi)
    tol = 64 * torch.finfo(y.dtype).eps
    width = hi - lo  # the step before last, as in Numerical Recipes' rtsafe
    last = width
    best = torch.full_like(y_, float("inf"))
    best_x = x
    for _ in range(iterations):
        fx, dfx = g(x)
        r = fx - y_
        better = r.abs() < best  # keep the best evaluated point (False for NaN)
        best = torch.where(better, r.abs(), best)
        best_x = torch.where(better, x, best_x)
        below = r < 0
        lo = torch.where(below, x, lo)
        hi = torch.where(below, hi, x)
        delta = r / dfx
        step = x - delta
        # Newton if it stays in the bracket and at least halves the step before last;
        # otherwise bisect (comparisons with NaN are False, so NaN steps bisect).
        small = delta.abs() <= tol * (1 + x.abs())  # (nearly) converged: keep polishing
        newton = (step >= lo) & (step <= hi) & ((2 * delta.abs() <= width.abs()) | small)
        width = last
        half = (hi - lo) / 2
        last = torch.where(newton, delta, half)
        x = torch.where(newton, step, lo + half)
    x = best_x
    if not implicit:
        return x
    fx, dfx = f_and_df(x)
    delta = (fx - y) / dfx
    step = x - delta
    fixed_step = step.detach()
    lower_ = torch.as_tensor(lower, dtype=y.dtype, device=y.device)
    upper_ = torch.as_tensor(upper, dtype=y.dtype, device=y.device)
    # Value: the refined step when it is short (within the final bracket's width, or 1%)
    # and inside the initial bounds, else the root itself; gradient: always the
    # implicit one carried by ``step``.
    short = delta.detach().abs() <= (hi - lo) + 1e-2 * (1 + x.abs())
    accept = short & (fixed_step >= lower_) & (fixed_step <= upper_)
    return torch.where(accept, step, x + (step - fixed_step))
