r"""Free-form Jacobian transform: the flow map of an ODE (continuous normalizing flows)."""

from __future__ import annotations

__all__ = ["AUTO_STEPS", "TRACE_SCALE", "FreeFormJacobianTransform", "adaptive_allowed"]

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch._C._functorch import TransformType, get_interpreter_stack
from torch.distributions import constraints

from ..ode import METHODS, divergence_exact, divergence_hutchinson, odeint, odeint_adaptive
from ..pytree import register_pytree_class, tree_leaves
from .base import FunctionalTransform

_DIVERGENCES = ("forward", "reverse")

#: The log-determinant is integrated scaled by this factor, which relaxes the adaptive
#: solver's tolerance on it (Zuko's ``trace_scale``, so the same steps are taken).
TRACE_SCALE = 1e-2

#: The number of fixed RK4 steps ``steps="auto"`` takes where the adaptive solver cannot run.
AUTO_STEPS = 16


def adaptive_allowed() -> bool:
    r"""Whether the adaptive solver can run here: not while ``torch.compile`` traces and
    under no :mod:`torch.func` transform but ``grad``/``vjp`` (``vmap``, ``jvp`` and
    ``jacfwd`` need fixed iteration counts)."""

    if torch.compiler.is_compiling():
        return False
    stack = get_interpreter_stack() or ()
    return all(level.key() == TransformType.Grad for level in stack)


def _scaled(d: Any, span: Tensor) -> Any:
    r"""``span * d`` for the state's derivative: ``dx`` (*, D) or ``(dx, dladj)``; ``span``
    has the time's batch shape, aligned to the left of the event dim of ``dx``."""

    if isinstance(d, tuple):
        return span[..., None] * d[0], span * d[1]
    return span[..., None] * d


@register_pytree_class(children=("f", "t0", "t1", "jvp"), static=("exact", "steps", "method", "divergence", "atol", "rtol"))
class FreeFormJacobianTransform(FunctionalTransform):
    r"""The flow map of a system of first-order ODEs :math:`\frac{dx}{dt} = f_\phi(t, x)`,

    .. math:: y = x(t_1) = x(t_0) + \int_{t_0}^{t_1} f_\phi(t, x(t)) ~ dt ,

    whose log-determinant obeys the instantaneous change of variables

    .. math:: \log |\det J(x)| = \int_{t_0}^{t_1} \operatorname{tr} \frac{\partial f_\phi(t, x(t))}{\partial x(t)} ~ dt .

    The state and the log-determinant are integrated together, in the normalized time
    :math:`s = (t - t_0) / (t_1 - t_0) \in [0, 1]` (so :math:`t_0, t_1` may carry batch
    dimensions, e.g. of a distribution returned by ``vmap``), by one of two solvers:

    * adaptive Dormand-Prince 5(4) (:func:`lazydist_functional.ode.odeint_adaptive`) with
      Zuko's tolerances ``atol``/``rtol`` (relaxed for the log-determinant by :data:`TRACE_SCALE`),
      Zuko's own method, so results match Zuko's. It picks step sizes with ``.item()``:
      fine for ``backward()``, ``torch.func.grad``/``vjp``/``jacrev``, not under ``vmap``,
      ``jvp``/``jacfwd`` or ``torch.compile``;
    * ``steps`` fixed steps of an explicit Runge-Kutta ``method``
      (:func:`lazydist_functional.ode.odeint`): plain tensor arithmetic that runs under
      every :mod:`torch.func` transform and ``torch.compile`` (gradients are those of the
      discrete solution); the error shrinks as :math:`O(\text{steps}^{-4})` for ``"rk4"``.

    ``steps="auto"`` (default) picks the adaptive solver where it can run and
    :data:`AUTO_STEPS` of ``"rk4"`` elsewhere (:func:`adaptive_allowed` decides, from the
    ``torch.func`` transforms active at call time); an integer always takes fixed steps;
    ``None`` always the adaptive solver (an error under ``vmap``). The inverse integrates
    from :math:`t_1` back to :math:`t_0`; forward and inverse agree up to the solver's error.

    The trace is exact (``exact=True``: :math:`D` batched Jacobian-vector products,
    ``divergence="forward"``, or vector-Jacobian products, ``"reverse"``, with
    :mod:`torch.func`; or the products of a hand-written ``jvp``, see below) or the
    Hutchinson estimate :math:`\epsilon^\top J \epsilon`, :math:`\epsilon \sim \mathcal{N}(0, I)`,
    drawn once per call with an out-of-place factory (``vmap(..., randomness="different")``
    draws independent noise per batch member).

    Compared with ``zuko.transforms.FreeFormJacobianTransform`` (same first arguments):
    ``phi`` is accepted and ignored (the parameters are bound inside ``f``, e.g. with a
    :class:`~lazydist_functional.pytree.Partial`); ``atol``/``rtol`` only matter for the
    adaptive solver (with fixed steps, ``steps`` sets the accuracy).

    References:
        | FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models (Grathwohl et al., 2018)
        | https://arxiv.org/abs/1810.01367

    Arguments:
        f: the vector field ``f(t, x)`` mapping :math:`(*, D)` to :math:`(*, D)` row-wise;
            a pytree (e.g. :class:`~lazydist_functional.pytree.Partial`) if the transform
            is to be returned from a vmapped function.
        t0: the initial integration time :math:`t_0`.
        t1: the final integration time :math:`t_1`.
        phi: ignored (Zuko compatibility).
        atol: the absolute tolerance of the adaptive solver.
        rtol: the relative tolerance of the adaptive solver.
        exact: exact trace (``True``) or Hutchinson estimate (``False``).
        steps: ``"auto"``, a number of fixed solver steps, or ``None`` (adaptive).
        method: a fixed-step method of :data:`lazydist_functional.ode.METHODS`.
        divergence: ``"forward"`` or ``"reverse"`` mode for the exact trace (when ``jvp``
            is not given).
        jvp: optional ``jvp(t, x, v) -> (f(t, x), J v)`` for a stack of tangents ``v`` of
            shape :math:`(*, K, D)` (``J v`` of shape :math:`(*, K, D)`), e.g. propagated
            by hand through a network, which is much cheaper than :mod:`torch.func`'s
            ``jvp`` on small batches. Used for both the exact trace (``v = I``) and the
            Hutchinson estimate (``v = \epsilon``).

    Example:
        >>> from lazydist_functional.pytree import Partial
        >>> A = torch.tensor([[-1.0, 2.0], [0.0, 0.5]])
        >>> f = FreeFormJacobianTransform(Partial(lambda A, t, x: x @ A.T, (A,)))
        >>> x = torch.randn(2)
        >>> y, ladj = f.call_and_ladj(x)
        >>> torch.allclose(y, torch.linalg.matrix_exp(A) @ x, atol=1e-5), round(ladj.item(), 4)
        (True, -0.5)
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self,
        f: Callable[[Tensor, Tensor], Tensor],
        t0: float | Tensor = 0.0,
        t1: float | Tensor = 1.0,
        phi: Iterable[Tensor] = (),
        atol: float = 1e-6,
        rtol: float = 1e-5,
        exact: bool = True,
        *,
        steps: int | str | None = "auto",
        method: str = "rk4",
        divergence: str = "forward",
        jvp: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}', expected one of {METHODS}")
        if divergence not in _DIVERGENCES:
            raise ValueError(f"unknown divergence '{divergence}', expected one of {_DIVERGENCES}")
        if steps is not None and steps != "auto" and (isinstance(steps, str) or int(steps) < 1):
            raise ValueError(f"'steps' should be 'auto', a positive integer or None, got {steps!r}")
        self.f = f
        self.t0 = torch.as_tensor(t0)
        self.t1 = torch.as_tensor(t1)
        self.exact = bool(exact)
        self.steps = steps if steps is None or steps == "auto" else int(steps)
        self.atol, self.rtol = float(atol), float(rtol)
        self.method = str(method)
        self.divergence = str(divergence)
        self.jvp = jvp

    def __repr__(self) -> str:
        return "FreeFormJacobianTransform()"  # Zuko's text (the solver's settings are attributes)

    def _like(self, t0: Tensor, t1: Tensor) -> FreeFormJacobianTransform:
        out = object.__new__(FreeFormJacobianTransform)
        out.f, out.t0, out.t1, out.jvp = self.f, t0, t1, self.jvp
        out.exact, out.steps, out.method, out.divergence = self.exact, self.steps, self.method, self.divergence
        out.atol, out.rtol = self.atol, self.rtol
        return out

    @property
    def inv(self) -> FreeFormJacobianTransform:  # type: ignore[override]
        return self._like(self.t1, self.t0)

    def adaptive(self) -> bool:
        r"""Whether a call made here uses the adaptive solver (see ``steps``)."""

        return self.steps is None or (self.steps == "auto" and adaptive_allowed())

    def _uses_adaptive(self, x: Any) -> bool:
        r"""Whether this call integrates ``x`` with the adaptive solver. Meta tensors have
        shapes but no values to choose steps from: ``"auto"`` takes fixed steps on them."""

        meta = self.steps == "auto" and any(leaf.is_meta for leaf in tree_leaves(x))
        return self.adaptive() and not meta

    def _solve(self, f: Callable[[Tensor, Any], Any], x: Any, t0: Tensor, t1: Tensor, adaptive: bool) -> Any:
        span = t1 - t0

        def g(s: Tensor, state: Any) -> Any:  # the field in the normalized time s
            return _scaled(f(t0 + s * span, state), span)

        if adaptive:
            return odeint_adaptive(g, x, 0.0, 1.0, self.atol, self.rtol)
        steps = AUTO_STEPS if self.steps == "auto" else self.steps
        return odeint(g, x, 0.0, 1.0, steps, self.method)

    def _integrate(self, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
        return self._solve(self.f, x, t0, t1, self._uses_adaptive(x))

    # Value-only paths: the state alone, without the trace's D Jacobian-vector products
    # per step (sampling a CNF).
    def _call(self, x: Tensor) -> Tensor:
        return self._integrate(x, self.t0, self.t1)

    def _inverse(self, y: Tensor) -> Tensor:
        return self._integrate(y, self.t1, self.t0)

    def _integrate_and_ladj(self, x: Tensor, t0: Tensor, t1: Tensor) -> tuple[Tensor, Tensor]:
        f, g = self.f, self.jvp
        if g is not None and self.exact:
            eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)

            def field(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
                dx, columns = g(t, state[0], eye)  # columns[..., i, :] = J e_i
                return dx, torch.diagonal(columns, dim1=-2, dim2=-1).sum(dim=-1)
        elif g is not None:
            eps = torch.randn(x.shape, dtype=x.dtype, device=x.device)

            def field(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
                dx, Je = g(t, state[0], eps.unsqueeze(-2))
                return dx, (Je.squeeze(-2) * eps).sum(dim=-1)
        elif self.exact:
            mode = self.divergence

            def field(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
                return divergence_exact(lambda z: f(t, z), state[0], mode)
        else:
            eps = torch.randn(x.shape, dtype=x.dtype, device=x.device)

            def field(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
                return divergence_hutchinson(lambda z: f(t, z), state[0], eps)

        ladj = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        if not self._uses_adaptive(x):
            # Fixed steps: the trace is integrated as is. (Scaling it by the module-level
            # float TRACE_SCALE here would put that float in torch.compile's graphs as a
            # dynamic SymFloat input, whose product with a vmapped tensor inductor cannot
            # lower with dynamic=True; see _unscaled_under_fixed_steps in tests/test_cnf.py.)
            return self._solve(field, (x, ladj), t0, t1, False)

        def scaled(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            dx, trace = field(t, state)
            return dx, TRACE_SCALE * trace

        y, ladj = self._solve(scaled, (x, ladj), t0, t1, True)
        return y, ladj / TRACE_SCALE

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._integrate_and_ladj(x, self.t0, self.t1)

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._integrate_and_ladj(y, self.t1, self.t0)
