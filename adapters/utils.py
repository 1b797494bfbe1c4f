r"""``zuko.utils`` names: module partials, broadcasting, unpacking, and the numerical
routines (bisection, Gauss–Legendre quadrature, ODE integration), here as plain,
``torch.func``-safe tensor code (no custom ``autograd.Function``)."""

from __future__ import annotations

__all__ = [
    "ModuleBoundDistribution",
    "Partial",
    "SpecModule",
    "bisection",
    "broadcast",
    "from_zuko",
    "gauss_legendre",
    "module_trees",
    "odeint",
    "to_functional",
    "unpack",
]

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ..flows._conditioner import unpack
from ..ode import odeint_adaptive
from ..transforms.monotonic import gauss_legendre_nodes
from .functional import ModuleBoundDistribution, from_zuko, to_functional
from .module import SpecModule, module_trees


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

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        own = [getattr(self, f"_{i}") for i in range(self._nargs)]
        return self.f(*own, *args, **{k: getattr(self, k) for k in self._keys}, **kwargs)


def broadcast(*tensors: Tensor, ignore: int | Sequence[int] = 0) -> list[Tensor]:
    r"""Broadcasts tensors together, except their ``ignore`` rightmost dimensions.

    Example:
        >>> x, y = broadcast(torch.rand(3, 1, 2), torch.rand(4, 5), ignore=1)
        >>> x.shape, y.shape
        (torch.Size([3, 4, 2]), torch.Size([3, 4, 5]))
    """

    ignore = [ignore] * len(tensors) if isinstance(ignore, int) else list(ignore)
    batch = torch.broadcast_shapes(*(t.shape[: t.dim() - i] for t, i in zip(tensors, ignore, strict=True)))
    return [t.expand(*batch, *t.shape[t.dim() - i :]) for t, i in zip(tensors, ignore, strict=True)]


def bisection(
    f: Callable[[Tensor], Tensor], y: Tensor, a: float | Tensor, b: float | Tensor, n: int = 16,
    phi: Iterable[Tensor] = (),
) -> Tensor:
    r"""``n`` bisection steps for :math:`f(x) = y` with :math:`f` increasing on :math:`[a, b]`;
    gradients w.r.t. ``y`` and the parameters captured by ``f`` by one implicit Newton step
    (:math:`dx = dy / f'(x)`). ``phi`` is accepted for Zuko compatibility and unused.

    Example:
        >>> x = bisection(lambda x: x**3, torch.tensor(8.0), 0.0, 4.0, n=40)
        >>> round(float(x), 4)
        2.0
    """

    a = torch.as_tensor(a, dtype=y.dtype, device=y.device).expand(y.shape)
    b = torch.as_tensor(b, dtype=y.dtype, device=y.device).expand(y.shape)
    with torch.no_grad():
        lo, hi, yd = a.detach(), b.detach(), y.detach()
        for _ in range(n):
            mid = (lo + hi) / 2
            below = f(mid) < yd
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        x = (lo + hi) / 2
    value, slope = torch.func.jvp(f, (x,), (torch.ones_like(x),))
    return x - (value - y) / slope


def gauss_legendre(
    f: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, n: int = 3, phi: Iterable[Tensor] = ()
) -> Tensor:
    r""":math:`\int_a^b f(x)\,dx \approx (b - a) \sum_i w_i f(a + (b - a) \xi_i)` with the ``n``
    Gauss–Legendre nodes :math:`\xi_i` and weights :math:`w_i` of :math:`[0, 1]`; differentiable
    by plain autograd (also under ``vmap``).

    Example:
        >>> gauss_legendre(lambda x: x**2, torch.tensor(0.0), torch.tensor(3.0), n=3)
        tensor(9.)
    """

    nodes, weights = gauss_legendre_nodes(n, dtype=a.dtype, device=a.device)  # on [0, 1]
    width = b - a
    x = a[..., None] + width[..., None] * nodes
    fx = f(x.movedim(-1, 0))
    return width * torch.tensordot(weights, fx, dims=([0], [0]))


def odeint(
    f: Callable[[Tensor, Any], Any], x: Any, t0: float | Tensor, t1: float | Tensor,
    phi: Iterable[Tensor] = (), atol: float = 1e-6, rtol: float = 1e-5,
) -> Any:
    r"""Zuko's adaptive ``odeint`` signature (Dormand–Prince 5(4), :func:`lazydist_functional.ode.odeint_adaptive`);
    for ``vmap`` use the fixed-step :func:`lazydist_functional.ode.odeint`.

    Example:
        >>> x1 = odeint(lambda t, x: -x, torch.tensor(1.0), 0.0, 1.0)
        >>> round(float(x1), 4)
        0.3679
    """

    return odeint_adaptive(f, x, t0, t1, atol=atol, rtol=rtol)
