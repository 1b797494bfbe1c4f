r"""Normalizing flow: a base distribution pushed through an invertible transform."""

from __future__ import annotations

__all__ = ["NormalizingFlow"]

from textwrap import indent

import torch
from torch import Size, Tensor
from torch.distributions import Distribution, Independent, Transform

from ..checks import outside_inference, promote_input
from ..pytree import first_float, register_pytree_class
from ..transforms.base import call_and_ladj, sum_rightmost
from .base import FunctionalDistribution, check_sample
from .draws import Draws, draw
from .vmap_fold import folded_log_prob


def _dtype_of(d: Distribution) -> torch.dtype | None:
    r"""The dtype of a distribution's first floating-point leaf (reads ``.dtype`` only)."""

    leaf = first_float(d)
    return None if leaf is None else leaf.dtype


@register_pytree_class(children=("transform", "base"))
class NormalizingFlow(FunctionalDistribution):
    r"""Distribution of :math:`X` with :math:`Z = f(X) \sim p(Z)`.

    .. math:: \log p(X = x) = \log p(Z = f(x)) + \log \left| \det J_f(x) \right|

    Sampling maps :math:`z \sim p(Z)` through :math:`f^{-1}`; with ``key=k`` the base
    draws with ``k`` (the transforms draw nothing), so every flow takes keys. Batch shape is the base's
    batch shape (the context batch when conditional), event shape the base's.

    References:
        | Normalizing Flows for Probabilistic Modeling and Inference (Papamakarios et al., 2021)
        | https://arxiv.org/abs/1912.02762

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> from lazydist_functional.transforms import MonotonicAffineTransform
        >>> f = MonotonicAffineTransform(torch.zeros(2), torch.zeros(2))
        >>> d = NormalizingFlow(f, DiagNormal(torch.zeros(2), torch.ones(2)))
        >>> d.log_prob(torch.zeros(2))
        tensor(-1.8379)
    """

    def __init__(self, transform: Transform, base: Distribution) -> None:
        extra = transform.codomain.event_dim - len(base.event_shape)
        self.transform = transform
        self.base = Independent(base, extra, validate_args=False) if extra > 0 else base

    def __repr__(self) -> str:
        lines = indent(f"(transform): {self.transform!r}\n(base): {self.base!r}", "  ")
        return f"{type(self).__name__}(\n{lines}\n)"

    @property
    def reinterpreted(self) -> int:
        r"""The number of the base's event dimensions the transform treats as batch:
        its log-determinant is summed over them."""

        return max(len(self.base.event_shape) - self.transform.codomain.event_dim, 0)

    @property
    def batch_shape(self) -> Size:
        return self.base.batch_shape

    @property
    def event_shape(self) -> Size:
        return self.transform.inverse_shape(self.base.event_shape)

    def expand(self, batch_shape: Size, _instance: object = None) -> NormalizingFlow:
        new = object.__new__(type(self))
        new.transform, new.base = self.transform, self.base.expand(batch_shape)
        return new

    @property
    def _value_event_shape(self) -> Size:
        r"""The event shape of a value: :attr:`event_shape` without the leading dimensions that
        a transform's parameters broadcast into it (a torch transform's ``inverse_shape``, e.g.
        an ``AffineTransform`` with one ``loc`` per context, includes them)."""

        shape = self.event_shape
        if shape == self.base.event_shape:  # (every flow of the catalogue: no constraint built per call)
            return shape
        t = self.transform
        rank = len(self.base.event_shape) + t.domain.event_dim - t.codomain.event_dim
        return shape[len(shape) - rank :] if 0 <= rank < len(shape) else shape

    def log_prob(self, x: Tensor) -> Tensor:
        x = outside_inference(promote_input(x, _dtype_of(self.base)))
        event = self._value_event_shape
        check_sample(x, self, _dtype_of(self.base), event=event)
        # a value with fewer batch dims than the distribution (one x, many contexts) is
        # broadcast first, so every transform sees x and its context with one batch shape
        batch = torch.broadcast_shapes(x.shape[: x.dim() - len(event)], self.batch_shape)
        if x.shape[: x.dim() - len(event)] != batch:
            x = x.expand(batch + event)
        out = folded_log_prob(self, x, NormalizingFlow._log_prob)
        return self._log_prob(x) if out is None else out

    def _log_prob(self, x: Tensor) -> Tensor:
        z, ladj = call_and_ladj(self.transform, x)
        return self.base.log_prob(z) + sum_rightmost(ladj, self.reinterpreted)

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        return self.transform.inv(draw(self.base, sample_shape, draws))

    def rsample_and_log_prob(self, sample_shape: Size = Size(), *, key: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Samples :math:`x = f^{-1}(z)` and returns :math:`\log p(x)` from the same pass
        (``key`` as in :meth:`rsample`)."""

        z = draw(self.base, Size(sample_shape), self._draws(key))
        x, ladj = call_and_ladj(self.transform.inv, z)
        return x, self.base.log_prob(z) - sum_rightmost(ladj, self.reinterpreted)
