r"""Monotonic transforms given by the integral of a positive function (UMNN), by
Gauss–Legendre quadrature (evaluated in chunks of nodes sized to the input, so that
large batches and ``vmap`` over many parameter sets stay in cache)."""

from __future__ import annotations

__all__ = ["UnconstrainedMonotonicTransform", "gauss_legendre_nodes", "gauss_legendre_rule", "nodes_per_chunk"]

from collections.abc import Callable, Iterable
import numpy as np
import torch
from torch import Tensor

from torch._C._functorch import get_unwrapped, is_functorch_wrapped_tensor

from ...pytree import register_pytree_class
from ...roots import detach_tree, newton_bisection
from .base import MonotonicTransform


#: Default size of the quadrature rule the inverse iterates on.
INVERSE_NODES = 8

#: Input elements (times quadrature nodes) evaluated by the integrand in one call: the
#: rule is applied in chunks of nodes so that the integrand's activations (this many
#: elements times its hidden width) stay in cache, under ``vmap`` too.
CHUNK_ELEMENTS = 4096

#: The same budget for tensors off the CPU: a GPU has no cache to stay in, and there the
#: CPU's budget cost launches (one node per call at N = 4096 x 5 features: UNAF's eager
#: ``log_prob`` 7x Zuko's time on an H200, its sampling 2.6x).
DEVICE_CHUNK_ELEMENTS = 1 << 20

#: Nodes per chunk while ``torch.compile`` traces (shapes are symbolic there).
COMPILED_CHUNK = 8

# A plain dict, not ``functools.lru_cache``: ``torch.compile`` reads a warm entry as a
# constant, but can trace neither ``lru_cache`` nor numpy's ``leggauss``. Specs warm the
# rules they use at construction (so compiling first works too).
_RULES: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def gauss_legendre_rule(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""Nodes and weights (Python floats, float64 accuracy) of the :math:`n`-point
    Gauss–Legendre rule on :math:`[0, 1]`: :math:`\int_0^1 f \approx \sum_i w_i f(t_i)`.

    Example:
        >>> nodes, weights = gauss_legendre_rule(2)
        >>> round(sum(w * t**3 for t, w in zip(nodes, weights)), 12)
        0.25
    """

    n = int(n)
    if n not in _RULES:
        nodes, weights = np.polynomial.legendre.leggauss(n)
        _RULES[n] = tuple(((nodes + 1) / 2).tolist()), tuple((weights / 2).tolist())
    return _RULES[n]


def physical_numel(x: Tensor) -> int:
    r"""Elements of ``x`` including the dimensions ``vmap`` (or another ``torch.func``
    transform) hides: the memory a call on ``x`` really touches."""

    while is_functorch_wrapped_tensor(x):
        x = get_unwrapped(x)
    return x.numel()


def nodes_per_chunk(x: Tensor, n: int) -> int:
    r"""How many of the :math:`n` quadrature nodes one integrand call takes for inputs ``x``:
    all of them for small inputs, fewer as the (physical) input grows, so that the
    integrand's working set stays near :data:`CHUNK_ELEMENTS` times its width on the CPU
    (:data:`DEVICE_CHUNK_ELEMENTS` on other devices).

    Example:
        >>> nodes_per_chunk(torch.zeros(64, 5), 32), nodes_per_chunk(torch.zeros(4096, 5), 32)
        (12, 1)
        >>> nodes_per_chunk(torch.zeros(4096, 5, device="meta"), 32)  # e.g. CUDA
        32
    """

    if torch.compiler.is_compiling():
        return min(n, COMPILED_CHUNK)
    budget = CHUNK_ELEMENTS if x.device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(1, min(n, budget // max(1, physical_numel(x))))


def gauss_legendre_nodes(n: int, dtype=None, device=None) -> tuple[Tensor, Tensor]:
    r"""Nodes and weights of the :math:`n`-point Gauss–Legendre rule on :math:`[0, 1]`, as tensors."""

    nodes, weights = gauss_legendre_rule(n)
    return (torch.tensor(nodes, dtype=dtype, device=device), torch.tensor(weights, dtype=dtype, device=device))


@register_pytree_class(children=("g",), static=("n", "bound", "eps", "iterations", "inverse_nodes"))
class UnconstrainedMonotonicTransform(MonotonicTransform):
    r"""Monotonic transform :math:`f(x) = \int_0^x g(u) \, du` of a positive function :math:`g`.

    The integral is an :math:`n`-point Gauss–Legendre quadrature written with plain
    differentiable tensor ops (gradients w.r.t. the parameters of :math:`g` work under
    ``vmap``); the log-determinant is :math:`\log g(x)` and the inverse's Newton steps
    use :math:`f' = g`. The inverse iterates on an ``inverse_nodes``-point quadrature and
    ends with one Newton step on the full one.

    .. math:: f(x) \approx x \sum_{i=1}^n w_i \, g(t_i x)

    Arguments:
        g: a positive element-wise function (a pytree callable, see
            :class:`MonotonicTransform`); it receives inputs with one extra leading
            dimension of size :math:`n`. If ``None``, the method :meth:`g` is used.
        n: the number of quadrature points.
        phi: ignored (Zuko compatibility).
        bound, eps, iterations: as for :class:`MonotonicTransform`.
        inverse_nodes: the number of quadrature points of the inverse's iterations.

    Example:
        >>> from lazydist_functional.pytree import Partial
        >>> t = UnconstrainedMonotonicTransform(Partial(torch.nn.functional.softplus, ()), n=16)
        >>> x = torch.randn(5)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-4)
        True
    """

    def __init__(self, g: Callable[[Tensor], Tensor] | None = None, n: int = 32, phi: Iterable[Tensor] = (),
                 bound: float = 10.0, eps: float = 1e-6, iterations: int = 12, inverse_nodes: int = INVERSE_NODES) -> None:
        super().__init__(bound=bound, eps=eps, iterations=iterations)
        if g is not None:
            self.g = g
        self.n = int(n)
        self.inverse_nodes = int(inverse_nodes)

    def _integral(self, x: Tensor, n: int) -> tuple[Tensor, Tensor]:
        r""":math:`f(x)` by the :math:`n`-point rule, and :math:`g(x)`. ``x`` is first broadcast
        to the shape of :math:`g(x)` (the parameters of :math:`g` may carry batch dims that
        ``x`` lacks), so that the node dimension stays leading."""

        gx = self.g(x)
        x = x.expand_as(gx)
        nodes, weights = gauss_legendre_nodes(n, x.dtype, x.device)  # one host-to-device copy each
        chunk = nodes_per_chunk(x, n)
        total = None
        for start in range(0, n, chunk):
            t, w = nodes[start : start + chunk], weights[start : start + chunk]
            part = torch.tensordot(w, self.g(t.reshape(-1, *([1] * x.dim())) * x), dims=1)
            total = part if total is None else total + part
        return x * total, gx

    def f(self, x: Tensor) -> Tensor:
        return self._integral(x, self.n)[0]

    def value_and_derivative(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._integral(x, self.n)

    def _coarse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._integral(x, min(self.n, self.inverse_nodes))

    def _solve(self, y: Tensor) -> Tensor:
        # Iterate on a coarser quadrature (``inverse_nodes`` points), then polish on the
        # full ``n``-point one (two steps, the last one differentiable), so that the
        # root and its implicit gradient are those of the full quadrature.
        detached = detach_tree(self)
        B = self.bound
        coarse = newton_bisection(detached._coarse, y, -B, B, iterations=self.iterations, implicit=False)
        return newton_bisection(
            self.value_and_derivative, y, -B, B, iterations=2, x0=coarse, fixed=detached.value_and_derivative
        )
