r"""Sum-of-squares polynomial transform (SOSPF's univariate transform), in closed form."""

from __future__ import annotations

__all__ = ["SOSPolynomialTransform"]

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from ...pytree import Partial, register_pytree_class
from ...roots import newton_bisection
from .quadrature import UnconstrainedMonotonicTransform


def _sos_horner(c: Tensor | Sequence[Tensor], x: Tensor, *, bound: float) -> tuple[Tensor, Tensor]:
    r""":math:`f(x) = B \sum_m c_m u^{m+1} / (m + 1)` and :math:`g(x) = \sum_m c_m u^m`, :math:`u = x / B`;
    ``c`` is a tensor of shape :math:`(*, M)` or a sequence of :math:`M` tensors."""

    c = c.unbind(-1) if isinstance(c, Tensor) else c
    u = x / bound
    M = len(c)
    f = c[M - 1] / M
    g = c[M - 1]
    for m in range(M - 2, -1, -1):
        f = f * u + c[m] / (m + 1)
        g = g * u + c[m]
    # Far out (|x| ~ 1e5 with degree 9 in float32) the polynomial overflows: saturate at
    # the largest finite value, so that what follows (e.g. a soft clip) stays finite (a NaN
    # input stays NaN).
    big = torch.finfo(u.dtype).max
    return (bound * f * u).clamp(-big, big), g.clamp_max(big)


@register_pytree_class(children=("a",), static=("slope", "n", "bound", "eps", "iterations", "inverse_nodes"))
class SOSPolynomialTransform(UnconstrainedMonotonicTransform):
    r"""Sum-of-squares (SOS) polynomial transform

    .. math:: f(x) = \int_0^x \frac{1}{K} \sum_{i=1}^K
        \left( 1 + \sum_{j=0}^L a_{i,j} (u / B)^j \right)^2 du + \lambda x

    with minimum slope :math:`\lambda`. The integrand is a polynomial of degree
    :math:`2L`, so :math:`f` is computed exactly in closed form (the coefficients of the
    squares, then Horner's scheme), which equals Zuko's :math:`(L+1)`-point
    Gauss–Legendre quadrature (exact for this degree) up to rounding and makes every
    Newton step of the inverse cost one polynomial evaluation.

    References:
        | Sum-of-Squares Polynomial Flow (Jaini et al., 2019)
        | https://arxiv.org/abs/1905.02325

    Arguments:
        a: the coefficients :math:`a`, shape :math:`(*, K, L + 1)`.
        slope: the minimum slope :math:`\lambda`.
        bound: the polynomial's scale :math:`B`.
        eps, iterations: as for :class:`MonotonicTransform`.

    Example:
        >>> t = SOSPolynomialTransform(torch.randn(3, 2, 4))
        >>> x = torch.randn(3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-4)
        True
    """

    def __init__(self, a: Tensor, slope: float = 1e-3, bound: float = 10.0, eps: float = 1e-6,
                 iterations: int = 12) -> None:
        super().__init__(n=a.shape[-1], bound=bound, eps=eps, iterations=iterations)
        self.a = a
        self.slope = float(slope)

    def _coefficients(self) -> Tensor:
        r"""Coefficients :math:`c_m` (ascending) of :math:`g(x) = \sum_m c_m (x / B)^m`, shape
        :math:`(*, 2L + 1)`."""

        return torch.stack(self._coefficient_rows(), dim=-1)

    def _coefficient_rows(self) -> list[Tensor]:
        r"""The coefficients :math:`c_m = \frac{1}{K} \sum_i \sum_{j + l = m} p_{i,j} p_{i,l}`
        (:math:`p_{i,j} = [j = 0] + a_{i,j}`) as :math:`2L + 1` tensors of shape :math:`(*)`.

        The schedule: :math:`a` with the polynomial index :math:`i` and power :math:`j` moved
        in front (eagerly one copy, so that the :math:`L + 1` planes of shape :math:`(K, *)`
        are contiguous; ``torch.compile`` fuses it away), the :math:`(L + 1)(L + 2) / 2`
        distinct products :math:`p_{\cdot,j} p_{\cdot,l}` of those planes and one mean over
        :math:`K` per coefficient, then Horner's scheme on the planes. No
        :math:`(*, K, (L + 1)^2)` outer product is materialized: that product and a matrix
        product over it cost as much as the conditioner's largest layer (under ``vmap`` over
        parameter sets, in the batched linear layers' transposed layout, twice that). One
        schedule eagerly and compiled, for the forward and the inverse."""

        L1 = self.a.shape[-1]
        a = self.a.movedim((-2, -1), (0, 1))
        if not torch.compiler.is_compiling():
            a = a.contiguous()
        p = list(a.unbind(1))  # L + 1 planes (K, *)
        p[0] = p[0] + 1
        twice = [2 * pj for pj in p[:-1]]
        c = []
        for m in range(2 * L1 - 1):
            terms = [twice[j] * p[m - j] for j in range(max(0, m - L1 + 1), (m + 1) // 2)]
            if m % 2 == 0:
                terms.append(p[m // 2].square())
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            c.append(total.mean(dim=0))
        c[0] = c[0] + self.slope
        return c

    def g(self, x: Tensor) -> Tensor:
        u = x / self.bound
        p = 1 + self.a @ (u[..., None] ** torch.arange(self.a.shape[-1], device=x.device))[..., None]
        return p.squeeze(-1).square().mean(dim=-1) + self.slope

    def value_and_derivative(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _sos_horner(self._coefficient_rows(), x, bound=self.bound)

    def _solve(self, y: Tensor) -> Tensor:
        c = self._coefficients()  # once per solve, not once per Newton step
        fn = partial(_sos_horner, bound=self.bound)
        return newton_bisection(
            Partial(fn, (c,)), y, -self.bound, self.bound, iterations=self.iterations,
            fixed=Partial(fn, (c.detach(),)),
        )

    def f(self, x: Tensor) -> Tensor:
        return self.value_and_derivative(x)[0]
