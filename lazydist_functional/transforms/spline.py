r"""Monotonic rational-quadratic spline transform (Durkan et al., 2019)."""

from __future__ import annotations

__all__ = ["MonotonicRQSTransform"]

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C._functorch import is_batchedtensor

from ..pytree import register_pytree_class
from .base import FunctionalTransform, take
from .softclip import soft_bound


@register_pytree_class(children=("widths", "heights", "derivatives"), static=("bound", "slope"))
class MonotonicRQSTransform(FunctionalTransform):
    r"""Monotonic rational-quadratic spline on :math:`[-B, B]`, identity outside.

    With :math:`K` bins of knots :math:`(x_k, y_k)` and knot derivatives
    :math:`\delta_k`, inside bin :math:`k`, with :math:`s_k = (y_{k+1} - y_k) / (x_{k+1} - x_k)`
    and :math:`\xi = (x - x_k) / (x_{k+1} - x_k)`,

    .. math:: f(x) = y_k + (y_{k+1} - y_k)
        \frac{s_k \xi^2 + \delta_k \xi (1 - \xi)}{s_k + (\delta_k + \delta_{k+1} - 2 s_k) \xi (1 - \xi)}

    Bin widths and heights are softmaxes of the unconstrained ``widths`` and
    ``heights``; the inner derivatives are :math:`\exp` of the soft-bounded
    ``derivatives`` and the two boundary derivatives are 1, so the spline joins the
    identity smoothly.

    Arguments:
        widths: unconstrained bin widths, shape :math:`(*, K)`.
        heights: unconstrained bin heights, shape :math:`(*, K)`.
        derivatives: unconstrained inner knot derivatives, shape :math:`(*, K - 1)`.
        bound: the domain bound :math:`B`.
        slope: the minimum slope.

    Example:
        >>> t = MonotonicRQSTransform(torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 7))
        >>> x = torch.randn(3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    sign = +1  # increasing, element-wise

    def __init__(
        self,
        widths: Tensor,
        heights: Tensor,
        derivatives: Tensor,
        bound: float = 5.0,
        slope: float = 1e-3,
    ) -> None:
        self.widths = widths
        self.heights = heights
        self.derivatives = derivatives
        self.bound = float(bound)
        self.slope = float(slope)

    def __repr__(self) -> str:
        return f"MonotonicRQSTransform(bins={self.bins})"

    @property
    def bins(self) -> int:
        r"""The number of bins :math:`K`."""

        return self.widths.shape[-1]

    def _knots(self) -> tuple[Tensor, Tensor, Tensor]:
        log_slope = -math.log(self.slope)
        B = self.bound
        w = F.softmax(soft_bound(self.widths, log_slope / 2), dim=-1)
        h = F.softmax(soft_bound(self.heights, log_slope / 2), dim=-1)
        d = torch.exp(F.pad(soft_bound(self.derivatives, log_slope), (1, 1)))
        xs = B * (2 * torch.cumsum(F.pad(w, (1, 0)), dim=-1) - 1)
        ys = B * (2 * torch.cumsum(F.pad(h, (1, 0)), dim=-1) - 1)
        return xs, ys, d

    @staticmethod
    def _gather(k: Tensor, *tables: Tensor) -> list[Tensor]:
        r"""``table[..., k]`` and ``table[..., k + 1]`` of each table."""

        index = torch.stack((k, k + 1), dim=-1)
        return [v for table in tables for v in take(table, index).unbind(-1)]

    @staticmethod
    def _bin(knots: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        r"""Index :math:`k` of the bin with ``knots[k] < v <= knots[k+1]`` (clamped to a
        valid bin) and whether :math:`v` lies in the spline's domain at all."""

        k = torch.sum(knots < v[..., None], dim=-1) - 1
        bins = knots.shape[-1] - 1
        return k.clamp(0, bins - 1), (k >= 0) & (k < bins)

    def _planes(self, v: Tensor, by: int) -> list[Tensor]:
        r"""What :meth:`_cells` returns, scheduled for ``torch.compile``: the knot tables as
        planes (bins first: a product with a constant triangular matrix writes the cumulative
        sums into a new buffer; ``cumsum`` on CPU costs 3 times a network layer), then a chain of
        :math:`K - 1` selections (:math:`v` past knot :math:`k`), all of which inductor fuses
        into one kernel vectorized over the samples (see :func:`_cumulative_planes` for the
        planes under ``vmap``). (The eager schedule's bins-last softmax,
        cumulative sum and gathers of 8 to 9 elements per row defeat inductor's CPU vectorizer:
        that kernel costs about 4 times this one.) The widths' softmax needs no maximum
        subtracted: its inputs are soft-bounded to :math:`|u| < \frac12 \log(1 / \text{slope})`.
        """

        log_slope = -math.log(self.slope)
        B = self.bound
        K = self.widths.shape[-1]
        c = [_cumulative_planes(torch.exp(soft_bound(t, log_slope / 2))) for t in (self.widths, self.heights)]
        scale = [(2 * B) / ci[-1] for ci in c]
        d = torch.exp(soft_bound(self.derivatives, log_slope)).movedim(-1, 0)
        one = torch.ones_like(v)
        lo, hi = [-B * one, -B * one], [c[0][0] * scale[0] - B, c[1][0] * scale[1] - B]
        d0, d1 = one, d[0]
        for k in range(1, K):
            past = v > hi[by]
            new = (c[0][k] * scale[0] - B, c[1][k] * scale[1] - B)
            lo = [torch.where(past, h, l) for h, l in zip(hi, lo)]
            hi = [torch.where(past, n, h) for n, h in zip(new, hi)]
            d0, d1 = torch.where(past, d1, d0), torch.where(past, d[k] if k < d.shape[0] else one, d1)
        return [lo[0], hi[0], lo[1], hi[1], d0, d1, (v > -B) & (v <= B)]

    def _cells(self, v: Tensor, by: int) -> list[Tensor]:
        r"""The bin of each value ``v`` along the x knots (``by=0``) or the y knots (``by=1``):
        its knots :math:`x_k, x_{k+1}, y_k, y_{k+1}`, the derivatives :math:`\delta_k,
        \delta_{k+1}`, and whether :math:`v \in (-B, B]`. Eagerly: the knot count below
        :math:`v` and one gather per table (Zuko's arithmetic, few operations); the forward
        under ``torch.compile``: :meth:`_planes` (the inverse keeps the eager schedule, so that
        a compiled ``sample`` equals the eager one bit for bit)."""

        if by == 0 and torch.compiler.is_compiling():  # the inverse (sampling) keeps one schedule
            return self._planes(v, by)
        xs, ys, d = self._knots()
        k, inside = self._bin((xs, ys)[by], v)
        return [*self._gather(k, xs, ys, d), inside]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x0, x1, y0, y1, d0, d1, inside = self._cells(x, 0)
        s = (y1 - y0) / (x1 - x0)
        xi = torch.where(inside, (x - x0) / (x1 - x0), torch.zeros_like(x))
        a = xi * (1 - xi)
        denom = s + (d0 + d1 - 2 * s) * a
        y = y0 + (y1 - y0) * (s * xi**2 + d0 * a) / denom
        dydx = s**2 * (d1 * xi**2 + 2 * s * a + d0 * (1 - xi) ** 2) / denom**2
        return torch.where(inside, y, x), torch.where(inside, torch.log(dydx), _outside_ladj(x))

    def inverse_and_ladj(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x0, x1, y0, y1, d0, d1, inside = self._cells(y, 1)
        s = (y1 - y0) / (x1 - x0)
        dy = torch.where(inside, y - y0, torch.zeros_like(y))
        # Solve a xi^2 + b xi + c = 0 for xi in [0, 1] (numerically stable root).
        t = d0 + d1 - 2 * s
        qa = (y1 - y0) * (s - d0) + dy * t
        qb = (y1 - y0) * d0 - dy * t
        qc = -s * dy
        disc = (qb**2 - 4 * qa * qc).clamp_min(0)
        xi = (2 * qc) / (-qb - disc.sqrt())  # in [0, 1] up to rounding (no clamp: keep the gradient)
        x = x0 + xi * (x1 - x0)
        a = xi * (1 - xi)
        dydx = s**2 * (d1 * xi**2 + 2 * s * a + d0 * (1 - xi) ** 2) / (s + t * a) ** 2
        return torch.where(inside, x, y), torch.where(inside, -torch.log(dydx), _outside_ladj(y))


def _outside_ladj(v: Tensor) -> Tensor:
    r"""The log-derivative outside the spline's domain: 0 (the identity), NaN for a NaN value
    (which compares as outside: a NaN input keeps a NaN density, as in Zuko)."""

    return torch.where(torch.isnan(v), v, torch.zeros_like(v))


def _cumulative_planes(e: Tensor) -> Sequence[Tensor]:
    r"""The cumulative sums :math:`c_k = \sum_{j \le k} e_j` of ``e`` (shape :math:`(*, K)`)
    as planes :math:`(K, *)` (a tensor, or under ``vmap`` a list of :math:`K` tensors), for
    :meth:`MonotonicRQSTransform._planes` under ``torch.compile``.

    Batched, a product with the constant lower-triangular matrix writes them (one small
    GEMM whose output is the planes, contiguous). Under a ``vmap`` that batches ``e``, that
    product's batching rule would expand the matrix per sample and run a ``bmm`` (twice the
    batched call's time at N = 4096); there the sums are a chain of :math:`K - 1` additions
    of strided slices, which inductor fuses into the kernel that reads them (no stacking
    copy: the planes are returned as a list).

    Example:
        >>> e = torch.rand(3, 4)
        >>> torch.allclose(_cumulative_planes(e), e.cumsum(-1).movedim(-1, 0))
        True
        >>> torch.func.vmap(lambda e: torch.stack(_cumulative_planes(e)))(e).shape
        torch.Size([3, 4])
    """

    K = e.shape[-1]
    if is_batchedtensor(e):
        planes = e.movedim(-1, 0)
        sums = [planes[0]]
        for k in range(1, K):
            sums.append(sums[-1] + planes[k])
        return sums
    lower = torch.ones(K, K, dtype=e.dtype, device=e.device).tril()  # lower[k, j] = [j <= k]
    return (lower @ e.reshape(-1, K).mT).reshape(K, *e.shape[:-1])
