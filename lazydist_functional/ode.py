r"""Fixed-step ODE integration and divergences that work under :mod:`torch.func`.

Everything here is plain differentiable tensor arithmetic in a Python loop of a
*fixed*, configurable number of steps: no ``.item()``, no data-dependent control
flow, no ``torch.autograd.grad`` and no custom ``autograd.Function``. Hence
:func:`odeint` composes with ``vmap`` (over states, times or the parameters closed
over by the vector field), ``grad``, ``jvp``, ``jacrev``/``jacfwd`` and ordinary
``backward()``, which differentiates through the solver's operations
("discretize-then-optimize": the gradient is exact for the discrete solution).

The state may be a tensor or any pytree of tensors (e.g. ``(x, log_det)``); the
vector field ``f(t, state)`` returns a tree of the same structure.

Divergences of a vector field :math:`f: \mathbb{R}^D \to \mathbb{R}^D` applied
row-wise to a batch (each output row depends only on its input row):

* :func:`divergence_exact`: :math:`\operatorname{tr} J_f(x) = \sum_i e_i^\top J_f(x) e_i`
  with :math:`D` Jacobian-vector (forward) or vector-Jacobian (reverse) products
  batched with ``vmap``, as ``torch.func.jacfwd``/``jacrev`` do;
* :func:`divergence_hutchinson`: the unbiased estimate
  :math:`\epsilon^\top J_f(x) \epsilon` with :math:`\mathbb{E}[\epsilon \epsilon^\top] = I`.

References:
    | Neural Ordinary Differential Equations (Chen et al., 2018)
    | https://arxiv.org/abs/1806.07366

    | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models (Grathwohl et al., 2018)
    | https://arxiv.org/abs/1810.01367

    | A Stochastic Estimator of the Trace of the Influence Matrix (Hutchinson, 1990)
"""

from __future__ import annotations

__all__ = [
    "METHODS",
    "divergence_exact",
    "divergence_hutchinson",
    "dopri5_step",
    "odeint",
    "odeint_adaptive",
    "rk_step",
]

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.func import jvp, vjp, vmap

from .pytree import tree_leaves, tree_map

# Explicit Runge-Kutta tableaus: (nodes c, matrix a (lower triangular rows), weights b).
# Standard coefficients (Butcher, "Numerical Methods for Ordinary Differential Equations").
# Each is returned by a function as literals (code constants), not read from a module-level
# container: under ``torch.compile(dynamic=True)`` Dynamo turns every float it reads from a
# global or an attribute into a dynamic SymFloat graph input, and inductor (torch 2.13) fails
# to lower the product of such a SymFloat with a tensor that is 0-dimensional per sample
# under ``vmap`` (a CNF's log-determinant: "x must be Tensor or scalar, got SymFloat" in its
# ``_to_copy`` decomposition). Code constants stay Python floats in the graph.
_Tableau = tuple[tuple[float, ...], tuple[tuple[float, ...], ...], tuple[float, ...]]


def _euler() -> _Tableau:
    return (0.0,), ((),), (1.0,)


def _midpoint() -> _Tableau:
    return (0.0, 0.5), ((), (0.5,)), (0.0, 1.0)


def _heun() -> _Tableau:
    return (0.0, 1.0), ((), (1.0,)), (0.5, 0.5)


def _rk4() -> _Tableau:
    return (0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6)


def _rk38() -> _Tableau:
    # Kutta's 3/8 rule: fourth order, slightly smaller error constant than "rk4".
    return (0.0, 1 / 3, 2 / 3, 1.0), ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)), (1 / 8, 3 / 8, 3 / 8, 1 / 8)


_TABLEAUS: dict[str, Callable[[], _Tableau]] = {
    "euler": _euler, "midpoint": _midpoint, "heun": _heun, "rk4": _rk4, "rk38": _rk38,
}

#: Names of the fixed-step methods accepted by :func:`odeint`.
METHODS = tuple(_TABLEAUS)


def _axpy(x: Any, terms: list[tuple[float, Any]], dt: Tensor) -> Any:
    r"""``x + dt * sum_j a_j k_j`` on trees (terms with a zero coefficient are skipped)."""

    terms = [(a, k) for a, k in terms if a != 0.0]
    if not terms:
        return x

    def combine(x_leaf: Tensor, *k_leaves: Tensor) -> Tensor:
        acc = None
        for (a, _), k in zip(terms, k_leaves, strict=True):
            acc = a * k if acc is None else acc + a * k
        return x_leaf + dt * acc

    return tree_map(combine, x, *(k for _, k in terms))


def rk_step(f: Callable[[Tensor, Any], Any], t: Tensor, x: Any, dt: Tensor, method: str = "rk4") -> Any:
    r"""One explicit Runge-Kutta step :math:`x(t + \Delta t) \approx x + \Delta t \sum_i b_i k_i`,
    :math:`k_i = f(t + c_i \Delta t, x + \Delta t \sum_{j<i} a_{ij} k_j)`."""

    nodes, matrix, weights = _TABLEAUS[method]()
    ks: list[Any] = []
    for c, row in zip(nodes, matrix, strict=True):
        xi = _axpy(x, list(zip(row, ks, strict=False)), dt)
        ks.append(f(t + c * dt if c else t, xi))
    return _axpy(x, list(zip(weights, ks, strict=True)), dt)


def odeint(
    f: Callable[[Tensor, Any], Any],
    x: Any,
    t0: float | Tensor,
    t1: float | Tensor,
    steps: int = 16,
    method: str = "rk4",
) -> Any:
    r"""Integrates :math:`\frac{dx}{dt} = f(t, x)` from :math:`t_0` to :math:`t_1` with
    ``steps`` equal steps of a fixed-step Runge-Kutta ``method``.

    .. math:: x(t_1) = x(t_0) + \int_{t_0}^{t_1} f(t, x(t)) ~ dt

    Arguments:
        f: the vector field ``f(t, x)``; ``x`` is a tensor or a pytree of tensors.
        x: the initial state :math:`x(t_0)`.
        t0: the initial time (a scalar, possibly batched by ``vmap``).
        t1: the final time (:math:`t_1 < t_0` integrates backward).
        steps: the number of steps (static).
        method: one of :data:`METHODS` (``"rk4"`` is fourth order).

    Returns:
        The final state :math:`x(t_1)`, with the structure of ``x``.

    Example:
        >>> A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
        >>> x1 = odeint(lambda t, x: x @ A.T, torch.tensor([1.0, 0.0]), 0.0, torch.pi / 2)
        >>> torch.allclose(x1, torch.tensor([0.0, -1.0]), atol=1e-5)
        True
    """

    if method not in _TABLEAUS:
        raise ValueError(f"unknown method '{method}', expected one of {METHODS}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"'steps' should be a positive integer, got {steps}")

    ref = tree_leaves(x)[0]
    t0 = torch.as_tensor(t0, dtype=ref.dtype, device=ref.device)
    t1 = torch.as_tensor(t1, dtype=ref.dtype, device=ref.device)
    dt = (t1 - t0) / steps
    for i in range(steps):
        x = rk_step(f, t0 + i * dt if i else t0, x, dt, method)
    return x


# Dormand-Prince 5(4) (Dormand & Prince, 1980): fifth-order solution ``b``, embedded
# fourth-order ``b_star``; the last stage is evaluated at the new point (first same as last).
_DP_NODES = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_MATRIX = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B_STAR = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def dopri5_step(
    f: Callable[[Tensor, Any], Any], t: Tensor, x: Any, dt: Tensor, k1: Any = None
) -> tuple[Any, Any, Any]:
    r"""One Dormand-Prince 5(4) step from :math:`(t, x)`: returns the fifth-order solution
    :math:`x'`, its difference :math:`e = x' - x^*` with the embedded fourth-order one
    (the local error estimate) and :math:`f(t + \Delta t, x')` (the next step's first
    stage, "first same as last"). ``k1`` is :math:`f(t, x)` if already known.

    Example:
        >>> x1, err, _ = dopri5_step(lambda t, x: -x, torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.1))
        >>> round(float(x1), 6), bool(err.abs() < 1e-7)
        (0.904837, True)
    """

    def scaled(v: Any) -> Any:
        return tree_map(lambda leaf: dt * leaf, v)

    fs: list[Any] = [f(t, x) if k1 is None else k1]  # f at the stages; k_i = dt * f_i
    ks: list[Any] = [scaled(fs[0])]
    for c, row in zip(_DP_NODES[1:-1], _DP_MATRIX[1:-1], strict=True):
        fs.append(f(t + c * dt, _combine(x, list(zip(row, ks, strict=False)))))
        ks.append(scaled(fs[-1]))
    x_new = _combine(x, list(zip(_DP_B, ks, strict=False)))
    fs.append(f(t + dt, x_new))
    ks.append(scaled(fs[-1]))
    x_star = _combine(x, list(zip(_DP_B_STAR, ks, strict=True)))
    error = tree_map(torch.sub, x_new, x_star)
    return x_new, error, fs[-1]


def _combine(x: Any, terms: list[tuple[float, Any]]) -> Any:
    r"""``x + a_1 k_1 + a_2 k_2 + ...`` on trees, summed left to right (zero terms skipped):
    the textbook order of the Dormand-Prince formulas, which Zuko's solver also follows, so
    float32 step-size decisions (made on rounding-level error estimates) agree with it."""

    terms = [(a, k) for a, k in terms if a != 0.0]

    def combine(x_leaf: Tensor, *k_leaves: Tensor) -> Tensor:
        acc = x_leaf
        for (a, _), k in zip(terms, k_leaves, strict=True):
            acc = acc + a * k
        return acc

    return tree_map(combine, x, *(k for _, k in terms))


def _rescaled(f: Callable[[Tensor, Any], Any], t0: Tensor, span: Tensor) -> Callable[[Tensor, Any], Any]:
    r"""The field in :math:`s \in [0, 1]`, :math:`t = t_0 + s (t_1 - t_0)`:
    :math:`dx/ds = (t_1 - t_0) f(t, x)` (so gradients reach :math:`t_0` and :math:`t_1`)."""

    def g(s: Tensor, x: Any) -> Any:
        return tree_map(lambda v: span * v, f(t0 + s * span, x))

    return g


def odeint_adaptive(
    f: Callable[[Tensor, Any], Any],
    x: Any,
    t0: float | Tensor,
    t1: float | Tensor,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    error_weights: Any = None,
    max_steps: int = 10_000,
) -> Any:
    r"""Integrates :math:`\frac{dx}{dt} = f(t, x)` from :math:`t_0` to :math:`t_1` with the
    adaptive Dormand-Prince 5(4) method (:func:`dopri5_step`).

    A step is accepted when :math:`\max_i |e_i| w_i / (\text{atol} + \text{rtol} \max(|x_i|, |x'_i|)) < 1`
    (tolerances below :math:`4 \epsilon` of the dtype are raised to it),
    with :math:`e` the difference of the embedded solutions and :math:`w` the optional
    per-leaf ``error_weights`` (a tree of floats like ``x``; e.g. a small weight relaxes
    the tolerance on an auxiliary log-determinant); the next step size is scaled by
    :math:`0.9\, \text{err}^{-1/5}` clipped to :math:`[0.1, 10]`. The solver runs in
    :math:`s = (t - t_0) / (t_1 - t_0) \in [0, 1]`, so the result is differentiable
    w.r.t. ``x``, the tensors ``f`` closes over, and ``t0``/``t1`` (tensors).

    Bad input never hangs it: entries whose initial state or initial derivative is not
    finite (a NaN row of ``x``, an infinite context seen by ``f``) are left out of the error
    norm, so for a row-wise field the other rows are solved as if alone and those rows come
    out NaN (as torch's own ops propagate them); a step size that underflows (a solution
    that blows up in finite time) raises, and so does running out of ``max_steps`` attempts
    (accepted and rejected steps together). An empty state takes one step.

    Not for ``vmap``: step sizes are chosen with ``.item()`` (Python control flow on
    values), which ``vmap`` refuses; use :func:`odeint` there. Gradients (``backward()``
    or ``torch.func.grad``) flow through the accepted steps (discretize-then-optimize);
    step-size choices are treated as constants.

    Example:
        >>> A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
        >>> x1 = odeint_adaptive(lambda t, x: x @ A.T, torch.tensor([1.0, 0.0]), 0.0, torch.pi / 2)
        >>> torch.allclose(x1, torch.tensor([0.0, -1.0]), atol=1e-5)
        True
    """

    leaves = tree_leaves(x)
    ref = leaves[0]
    t0 = torch.as_tensor(t0, dtype=ref.dtype, device=ref.device)
    t1 = torch.as_tensor(t1, dtype=ref.dtype, device=ref.device)
    if t0.dim() or t1.dim():
        raise ValueError(f"'t0' and 't1' should be scalars, got shapes {tuple(t0.shape)} and {tuple(t1.shape)}")
    if any(leaf.is_meta for leaf in leaves) or t0.is_meta or t1.is_meta:
        raise RuntimeError(
            "odeint_adaptive chooses its steps from values, which meta tensors do not have; "
            "use the fixed-step odeint (a FreeFormJacobianTransform with steps=<int> or 'auto')"
        )
    same = _read(lambda: bool(t0 == t1))
    if same:
        return x
    g = _rescaled(f, t0, t1 - t0)
    # No tolerance finer than the dtype resolves (float32 and float64 keep the given ones;
    # in bfloat16 or float16 the steps would otherwise shrink until they underflow).
    resolution = 4 * torch.finfo(ref.dtype).eps
    atol, rtol = max(atol, resolution), max(rtol, resolution)
    weights = [1.0] * len(leaves) if error_weights is None else tree_leaves(error_weights)
    if len(weights) != len(leaves):
        raise ValueError("'error_weights' should have one weight per leaf of the state")
    # The time and step are tensors of the state's dtype (Zuko's arithmetic, so the same
    # steps are accepted); only the error norm is read back.
    s = torch.zeros((), dtype=ref.dtype, device=ref.device)
    ds = torch.ones((), dtype=ref.dtype, device=ref.device)
    k_first = g(s, x)
    # Entries whose state or first derivative is not finite (a NaN row of x, an inf in a
    # context) stay non-finite whatever the step: they are left out of the error norm, so
    # the other rows are solved as if alone and those come out NaN, as torch's ops give.
    bad = [~(torch.isfinite(a) & torch.isfinite(k)) for a, k in zip(leaves, tree_leaves(k_first), strict=True)]
    for _ in range(max_steps):
        if not _read(lambda: bool(s < 1)):
            return x
        ds = torch.minimum(ds, 1 - s)
        x_new, error, k_last = dopri5_step(g, s, x, ds, k_first)
        ratios = [
            _max_ratio(w * e.abs() / (atol + rtol * torch.maximum(a.abs(), b.abs())), m)
            for w, e, a, b, m in zip(weights, tree_leaves(error), leaves, tree_leaves(x_new), bad, strict=True)
        ]
        norm = _read(lambda: float(torch.stack(ratios).max().detach()))
        norm = max(norm, 1e-9) if math.isfinite(norm) else math.inf  # a new non-finite entry: reject
        if norm < 1.0:
            s, x, k_first = s + ds, x_new, k_last
            leaves = tree_leaves(x)
        ds = ds * min(10.0, max(0.1, 0.9 / norm ** (1 / 5)))
        if norm >= 1.0 and _read(lambda: bool(s + ds <= s)):
            raise RuntimeError(
                f"odeint_adaptive: the step size underflowed at s = {float(s):.6g} of [0, 1] (the solution "
                "blows up, or the field stops being finite there); atol/rtol may be too tight for the dtype"
            )
    raise RuntimeError(
        f"odeint_adaptive did not reach t1 in max_steps={max_steps} steps (s = {float(s):.6g} of [0, 1]); "
        "raise max_steps or loosen atol/rtol"
    )


def _max_ratio(ratio: Tensor, bad: Tensor) -> Tensor:
    r"""The largest error ratio over the entries not in ``bad`` (0 if there is none)."""

    ratio = torch.where(bad, torch.zeros((), dtype=ratio.dtype, device=ratio.device), ratio)
    if ratio.numel() == 0:  # an empty batch
        return torch.zeros((), dtype=ratio.dtype, device=ratio.device)
    return ratio.max()


def _read(value: Callable[[], Any]) -> Any:
    r"""Reads a tensor's value back to Python, with a clear error where none exists (``vmap``)."""

    try:
        return value()
    except RuntimeError as error:
        raise RuntimeError("odeint_adaptive cannot run under vmap; use the fixed-step odeint") from error


def _basis(x: Tensor) -> Tensor:
    r"""The :math:`D` basis vectors :math:`e_i` broadcast to ``x``'s shape: :math:`(D, *, D)`."""

    D = x.shape[-1]
    eye = torch.eye(D, dtype=x.dtype, device=x.device)
    return eye.reshape(D, *(1,) * (x.dim() - 1), D).expand(D, *x.shape)


def divergence_exact(fn: Callable[[Tensor], Tensor], x: Tensor, mode: str = "forward") -> tuple[Tensor, Tensor]:
    r"""Returns :math:`f(x)` and the exact divergence :math:`\operatorname{tr} J_f(x)`.

    ``fn`` maps :math:`(*, D)` to :math:`(*, D)` row-wise (batch dims may broadcast
    to larger ones, e.g. against a context). The trace is :math:`\sum_i (J_f e_i)_i`,
    computed with :math:`D` batched ``jvp`` (``mode="forward"``, as
    ``torch.func.jacfwd``) or ``vjp`` (``mode="reverse"``, as ``torch.func.jacrev``).
    Costs :math:`O(D)` evaluations: meant for small :math:`D`.
    """

    if mode == "forward":
        # The primal output is the same for every tangent; ``out_dims=None`` would be
        # refused when an outer ``vmap`` batches it, so it is returned stacked (an expand).
        ys, columns = vmap(lambda v: jvp(fn, (x,), (v,)))(_basis(x))
        # columns[i] = J e_i, of shape (*, D): take its i-th entry.
        return ys[0], torch.diagonal(columns, dim1=0, dim2=-1).sum(dim=-1)
    if mode == "reverse":
        y, pullback = vjp(fn, x)
        if y.shape != x.shape:
            # fn broadcast x's batch dims (e.g. against a context): a pullback would sum
            # over them, so expand x first (the static shapes decide, not values).
            x = x.expand_as(y)
            y, pullback = vjp(fn, x)
        (rows,) = vmap(pullback)(_basis(y))  # rows[i] = e_i^T J
        return y, torch.diagonal(rows, dim1=0, dim2=-1).sum(dim=-1)
    raise ValueError(f"unknown mode '{mode}', expected 'forward' or 'reverse'")


def divergence_hutchinson(fn: Callable[[Tensor], Tensor], x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    r"""Returns :math:`f(x)` and the Hutchinson estimate :math:`\epsilon^\top J_f(x) \epsilon`
    of :math:`\operatorname{tr} J_f(x)`, unbiased when :math:`\mathbb{E}[\epsilon \epsilon^\top] = I`.

    ``eps`` broadcasts to ``x``'s shape. One ``jvp``: the cost of about two
    evaluations of ``fn``, independent of :math:`D`.
    """

    eps = eps.expand_as(x)
    y, Je = jvp(fn, (x,), (eps,))
    return y, (Je * eps).sum(dim=-1)
