r"""``zuko.utils`` names: module partials, broadcasting, unpacking, and the numerical
routines (bisection, Gauss–Legendre quadrature, ODE integration) as plain,
``torch.func``-safe tensor code that delegates to the core
(:mod:`lazydist_functional.roots`, :mod:`lazydist_functional.ode`).

Zuko implements the routines as ``autograd.Function``\ s (``Bisection``,
``GaussLegendre``, ``AdaptiveCheckpointAdjoint``); the names exist here with the same
``apply`` signatures, computed by the functions below (differentiable by plain
autograd, so they also compose with ``torch.func`` where the routine allows).
"""

from __future__ import annotations

__all__ = ["Partial", "bisection", "broadcast", "gauss_legendre", "odeint", "unpack"]

import math  # noqa: F401  (zuko.utils' namespace)
from collections.abc import Callable, Iterable, Sequence
from functools import cache  # noqa: F401  (zuko.utils' namespace)
from typing import Any

import numpy as np  # noqa: F401  (zuko.utils' namespace)
import torch
import torch.nn as nn
from torch import Size, Tensor  # noqa: F401  (zuko.utils' namespace)
from torch.autograd.function import FunctionCtx, once_differentiable  # noqa: F401  (zuko.utils' namespace)

from ..flows._conditioner import broadcast
from ..flows._conditioner import unpack as _unpack
from .. import ode as _ode
from .. import roots as _roots
from ..transforms.monotonic import gauss_legendre_nodes as _gauss_legendre_nodes


class Partial(nn.Module):
    r"""``functools.partial`` as a module: tensor arguments become parameters (or buffers
    with ``buffer=True``), named ``_<i>`` / by keyword as in Zuko.

    Example:
        >>> inc = Partial(torch.add, torch.tensor(1.0), buffer=True)
        >>> inc(torch.arange(3))
        tensor([1., 2., 3.])
    """

    def __init__(self, f: Callable[..., Any], /, *args: Any, buffer: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.f = f
        self._nargs, self._keys = len(args), list(kwargs)
        for name, value in [*((f"_{i}", a) for i, a in enumerate(args)), *kwargs.items()]:
            if isinstance(value, Tensor):
                if buffer:
                    self.register_buffer(name, value)
                else:
                    self.register_parameter(name, nn.Parameter(value))
            else:
                setattr(self, name, value)

    @property
    def args(self) -> list[Any]:
        r"""The positional arguments bound to ``f`` (tensors as registered)."""

        return [getattr(self, f"_{i}") for i in range(self._nargs)]

    @property
    def kwargs(self) -> dict[str, Any]:
        r"""The keyword arguments bound to ``f``."""

        return {key: getattr(self, key) for key in self._keys}

    def extra_repr(self) -> str:
        return "" if isinstance(self.f, nn.Module) else f"(f): {self.f}"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.f(*self.args, *args, **self.kwargs, **kwargs)


def unpack(x: Tensor, shapes: Sequence[Size]) -> tuple[Tensor, ...]:
    r"""``zuko.utils.unpack`` (Zuko's argument names): splits the last dimension of ``x``
    into tensors of the trailing ``shapes``.

    Example:
        >>> [t.shape for t in unpack(torch.zeros(2, 5), [(2,), (3,)])]
        [torch.Size([2, 2]), torch.Size([2, 3])]
    """

    return tuple(_unpack(x, shapes))


def bisection(
    f: Callable[[Tensor], Tensor], y: Tensor, a: float | Tensor, b: float | Tensor, n: int = 16,
    phi: Iterable[Tensor] = (),
) -> Tensor:
    r"""Solves :math:`f(x) = y` for :math:`x` between :math:`a` and :math:`b`, where
    :math:`f(a) \leq y \leq f(b)` (:math:`a > b` is allowed: :math:`f` then decreases).

    Zuko's ``n`` halvings of the bracket (the same values, the midpoint of the last one, for
    ``n`` evaluations of :math:`f` without derivatives), then gradients by the implicit
    function theorem, :math:`\partial x / \partial y = 1 / f'(x)` and
    :math:`\partial x / \partial \phi = -\partial_\phi f(x) / f'(x)` for the tensors ``f``
    closes over (one forward-mode derivative at :math:`x`), in plain tensor operations, so that
    ``vmap`` and ``grad`` go through it. ``phi`` is accepted for Zuko compatibility (those
    tensors get gradients through ``f`` anyway).

    Example:
        >>> x = bisection(lambda x: x**3, torch.tensor(8.0), 0.0, 4.0, n=40)
        >>> round(float(x), 4)
        2.0
    """

    a = torch.as_tensor(a, dtype=y.dtype, device=y.device)
    b = torch.as_tensor(b, dtype=y.dtype, device=y.device)
    with torch.no_grad():
        target, lo, hi = y.detach(), a.detach(), b.detach()
        for _ in range(n):
            c = (lo + hi) / 2
            below = f(c) < target
            lo, hi = torch.where(below, c, lo), torch.where(below, hi, c)
        x = (lo + hi) / 2
    if not torch.is_grad_enabled():
        return x
    fx, dfx = _roots.value_and_derivative(f, x)
    residual = fx - y
    return x - (residual - residual.detach()) / dfx.detach()  # the value x, the implicit gradients


def gauss_legendre(
    f: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, n: int = 3, phi: Iterable[Tensor] = ()
) -> Tensor:
    r""":math:`\int_a^b f(x)\,dx \approx (b - a) \sum_i w_i f(a + (b - a) \xi_i)` with the ``n``
    Gauss–Legendre nodes :math:`\xi_i` and weights :math:`w_i` of :math:`[0, 1]`; ``f``
    receives points stacked on a new first dimension.

    Gradients are those of the integral, as Zuko's: :math:`f(b)` and :math:`-f(a)` for the
    bounds (exact), and the quadrature of :math:`\partial f / \partial \phi` for the
    tensors ``f`` closes over. Plain tensor ops (``vmap`` and ``grad`` compose); ``phi``
    is accepted for Zuko compatibility.

    Example:
        >>> gauss_legendre(lambda x: x**2, torch.tensor(0.0), torch.tensor(3.0), n=3)
        tensor(9.)
    """

    a, b = torch.broadcast_tensors(torch.as_tensor(a), torch.as_tensor(b))
    a_, b_ = a.detach(), b.detach()
    nodes, weights = _gauss_legendre_nodes(n, dtype=a.dtype, device=a.device)
    x = torch.lerp(a_[..., None], b_[..., None], nodes).movedim(-1, 0)
    fx = f(torch.cat((x, a[None], b[None])))  # the nodes, then the bounds (for their gradients)
    area = (b_ - a_) * torch.tensordot(weights, fx[:n], dims=1)
    return area + fx[n + 1] * (b - b_) - fx[n] * (a - a_)  # zero in value, d/db = f(b), d/da = -f(a)


def odeint(
    f: Callable[..., Any], x: Tensor | Sequence[Tensor], t0: float | Tensor, t1: float | Tensor,
    phi: Iterable[Tensor] = (), atol: float = 1e-6, rtol: float = 1e-5,
) -> Tensor | list[Tensor]:
    r"""Integrates :math:`dx/dt = f(t, x)` from :math:`t_0` to :math:`t_1` with the adaptive
    Dormand–Prince method (:func:`lazydist_functional.ode.odeint_adaptive`), as Zuko's
    ``odeint``: ``x`` may be a sequence of tensors, then ``f(t, *x)`` returns one
    derivative per tensor. Differentiable w.r.t. ``x``, ``t0``, ``t1`` and the tensors
    ``f`` closes over (through the solver's steps); ``phi`` is accepted for Zuko
    compatibility. For ``vmap``, use the fixed-step :func:`lazydist_functional.ode.odeint`.

    Example:
        >>> x1 = odeint(lambda t, x: -x, torch.tensor(1.0), 0.0, 1.0)
        >>> round(float(x1), 4)
        0.3679
    """

    if isinstance(x, Tensor):
        return _ode.odeint_adaptive(f, x, t0, t1, atol=atol, rtol=rtol)
    return list(_ode.odeint_adaptive(lambda t, xs: tuple(f(t, *xs)), tuple(x), t0, t1, atol=atol, rtol=rtol))


def dopri45(
    f: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor, dt: Tensor, error: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    r"""One Dormand–Prince step (:func:`lazydist_functional.ode.dopri5_step`): the next
    state, and with ``error=True`` also the absolute local error estimate.

    Example:
        >>> x1, err = dopri45(lambda t, x: -x, torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.1), error=True)
        >>> round(float(x1), 6)
        0.904837
    """

    x_next, err, _ = _ode.dopri5_step(f, t, x, dt)
    return (x_next, err.abs()) if error else x_next


class NestedTensor(tuple):
    r"""A tuple of tensors with element-wise ``+``, ``-`` and scalar ``*`` (Zuko's helper).

    Example:
        >>> 2 * (NestedTensor((torch.ones(1), torch.zeros(2))) + NestedTensor((torch.ones(1), torch.ones(2))))
        (tensor([4.]), tensor([2., 2.]))
    """

    def __add__(self, other: Sequence[Tensor]) -> NestedTensor:  # type: ignore[override]
        return NestedTensor(u + v for u, v in zip(self, other, strict=True))

    def __sub__(self, other: Sequence[Tensor]) -> NestedTensor:
        return NestedTensor(u - v for u, v in zip(self, other, strict=True))

    def __rmul__(self, scale: Any) -> NestedTensor:
        return NestedTensor(scale * u for u in self)


class Bisection(torch.autograd.Function):
    r"""Zuko's ``Bisection.apply(f, y, a, b, n, *phi)``: :func:`bisection` (an
    ``autograd.Function`` by class, as Zuko's; ``apply`` computes with plain tensor ops)."""

    @staticmethod
    def apply(f: Callable[[Tensor], Tensor], y: Tensor, a: Tensor, b: Tensor, n: int,  # type: ignore[override]
              *phi: Tensor) -> Tensor:
        return bisection(f, y, a, b, n, phi)


class GaussLegendre(torch.autograd.Function):
    r"""Zuko's ``GaussLegendre.apply(f, a, b, n, *phi)`` and ``nodes(n)``: :func:`gauss_legendre`
    (an ``autograd.Function`` by class, as Zuko's; ``apply`` computes with plain tensor ops)."""

    nodes = staticmethod(_gauss_legendre_nodes)

    @staticmethod
    def apply(f: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, n: int, *phi: Tensor) -> Tensor:  # type: ignore[override]
        return gauss_legendre(f, a, b, n, phi)


class AdaptiveCheckpointAdjoint(torch.autograd.Function):
    r"""Zuko's ``AdaptiveCheckpointAdjoint.apply(settings, f, x, t0, t1, *phi)`` with
    ``settings = (atol, rtol, grad_enabled)``: :func:`odeint` on one tensor state (an
    ``autograd.Function`` by class, as Zuko's; gradients flow through the solver's steps)."""

    @staticmethod
    def apply(settings: tuple[float, float, bool], f: Callable[[Tensor, Tensor], Tensor], x: Tensor,  # type: ignore[override]
              t0: Tensor, t1: Tensor, *phi: Tensor) -> Tensor:
        atol, rtol, grad = settings
        with torch.set_grad_enabled(grad):
            return _ode.odeint_adaptive(f, x, t0, t1, atol=atol, rtol=rtol)
