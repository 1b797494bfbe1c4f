r"""Distributions built from other distributions: joint, truncated, order statistics,
transformed uniform, generalized normal."""

from __future__ import annotations

__all__ = ["GeneralizedNormal", "Joint", "Maximum", "Minimum", "Sort", "TopK", "TransformedUniform", "Truncated"]

import math

import torch
from torch import Size, Tensor
from torch.distributions import Distribution, Transform, Uniform, constraints

from ..checks import ConfigError
from ..pytree import register_pytree_class
from .base import FunctionalDistribution
from .draws import Draws, draw
from .gamma import standard_gamma
from .flow import NormalizingFlow
from .uniform import BoxUniform


@register_pytree_class(children=("marginals",))
class Joint(FunctionalDistribution):
    r"""Concatenation of independent variables: :math:`p(x) = \prod_i p(Z_i = x_i)`.

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> d = Joint(DiagNormal(torch.zeros(2), torch.ones(2)), torch.distributions.Uniform(0.0, 1.0))
        >>> d.event_shape, d.sample().shape
        (torch.Size([3]), torch.Size([3]))
    """

    def __init__(self, *marginals: Distribution) -> None:
        batch = torch.broadcast_shapes(*(m.batch_shape for m in marginals))
        self.marginals = [m if m.batch_shape == batch else m.expand(batch) for m in marginals]

    def __repr__(self) -> str:
        inner = "".join(f"\n  {m!r}" for m in self.marginals)
        return f"Joint({inner}\n)"

    @property
    def batch_shape(self) -> Size:
        return torch.broadcast_shapes(*(m.batch_shape for m in self.marginals))

    @property
    def event_shape(self) -> Size:
        return Size([sum(m.event_shape.numel() for m in self.marginals)])

    def expand(self, batch_shape: Size, _instance: object = None) -> Joint:
        return Joint(*(m.expand(batch_shape) for m in self.marginals))

    def log_prob(self, x: Tensor) -> Tensor:
        total, i = 0, 0
        for m in self.marginals:
            j = i + m.event_shape.numel()
            total = total + m.log_prob(x[..., i:j].reshape(x.shape[:-1] + m.event_shape))
            i = j
        return total

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        shape, batch = Size(sample_shape), self.batch_shape
        parts = []
        for i, m in enumerate(self.marginals):  # marginal i of member b draws with fold_in(k_b, i)
            z = draw(m, shape, draws.part(i))
            z = z.reshape(*shape, *m.batch_shape, -1)
            parts.append(z.expand(*shape, *batch, z.shape[-1]))
        return torch.cat(parts, dim=-1)


@register_pytree_class(children=("beta",))
class GeneralizedNormal(FunctionalDistribution):
    r"""Generalized normal :math:`p(x) = \frac{\beta}{2 \Gamma(1/\beta)} e^{-|x|^\beta}`.

    Sampling: :math:`|X|^\beta \sim \mathrm{Gamma}(1/\beta, 1)` with a random sign.

    Example:
        >>> GeneralizedNormal(torch.tensor(2.0)).log_prob(torch.tensor(0.0))
        tensor(-0.5724)
    """

    arg_constraints = {"beta": constraints.positive}
    support = constraints.real

    def __init__(self, beta: Tensor) -> None:
        self.beta = torch.as_tensor(beta)

    @property
    def batch_shape(self) -> Size:
        return self.beta.shape

    @property
    def event_shape(self) -> Size:
        return Size()

    def expand(self, batch_shape: Size, _instance: object = None) -> GeneralizedNormal:
        return GeneralizedNormal(self.beta.expand(batch_shape))

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.log(self.beta / 2) - torch.lgamma(1 / self.beta) - torch.abs(x) ** self.beta

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        beta = self.beta.expand(Size(sample_shape) + self.beta.shape)
        if draws.keyed:  # magnitude with fold_in(k, 0), sign with fold_in(k, 1)
            gamma = standard_gamma(draws.part(0), Size(sample_shape), 1 / self.beta)
        else:
            gamma = torch._standard_gamma(1 / beta)
        sign = torch.sign(draws.part(1).uniform(Size(sample_shape), self.beta.shape, self.beta) - 0.5)
        return gamma ** (1 / beta) * sign


@register_pytree_class(children=("transform", "base"))
class TransformedUniform(NormalizingFlow):
    r""":math:`X` such that :math:`f(X) \sim \mathcal{U}(f(l), f(u))`, :math:`f` increasing:
    :math:`p(x) = f'(x) / (f(u) - f(l))` on :math:`[l, u)`.

    Example:
        >>> from lazydist_functional.transforms import MonotonicAffineTransform
        >>> f = MonotonicAffineTransform(torch.tensor(0.0), torch.tensor(0.0))
        >>> TransformedUniform(f, torch.tensor(0.0), torch.tensor(2.0)).log_prob(torch.tensor(1.0))
        tensor(-0.6931)
    """

    def __init__(self, f: Transform, lower: Tensor, upper: Tensor) -> None:
        lower, upper = torch.as_tensor(lower), torch.as_tensor(upper)
        super().__init__(f, BoxUniform(f(lower), f(upper), ndims=0))


@register_pytree_class(children=("base", "low", "high"))
class Truncated(FunctionalDistribution):
    r"""A univariate base truncated to :math:`[l, u)`:
    :math:`p(x \mid l \le X < u) = p(x) / (F(u) - F(l))` inside, 0 outside.

    Sampling is by inverse CDF, :math:`x = F^{-1}(F(l) + (F(u) - F(l)) U)`.

    Example:
        >>> d = Truncated(torch.distributions.Normal(0.0, 1.0), 0.0)
        >>> d.log_prob(torch.tensor(0.0))  # twice the normal density at 0
        tensor(-0.2258)
    """

    def __init__(self, base: Distribution, lower: float | Tensor = -math.inf, upper: float | Tensor = math.inf) -> None:
        if len(base.event_shape) != 0:
            raise ConfigError(f"Truncated needs a univariate base, got event shape {tuple(base.event_shape)}")
        self.base = base
        self.low = base.cdf(torch.as_tensor(lower))
        self.high = base.cdf(torch.as_tensor(upper))

    @property
    def batch_shape(self) -> Size:
        r"""The base's batch shape, broadcast with the bounds' (bounds of shape (1, 1) around a
        scalar base draw samples of shape (*, 1, 1), as in Zuko)."""

        return torch.broadcast_shapes(self.base.batch_shape, self.low.shape, self.high.shape)

    @property
    def event_shape(self) -> Size:
        return Size()

    def expand(self, batch_shape: Size, _instance: object = None) -> Truncated:
        new = object.__new__(Truncated)
        new.base = self.base.expand(batch_shape)
        new.low, new.high = self.low.expand(batch_shape), self.high.expand(batch_shape)
        return new

    def __repr__(self) -> str:
        return f"Truncated({self.base})"

    @property
    def uniform(self) -> Uniform:
        r"""The uniform distribution of :math:`F(X)`, on :math:`[F(l), F(u))`."""

        return Uniform(self.low, self.high, validate_args=False)

    def cdf(self, x: Tensor) -> Tensor:
        return ((self.base.cdf(x) - self.low) / (self.high - self.low)).clamp(0, 1)

    def log_prob(self, x: Tensor) -> Tensor:
        u = self.base.cdf(x)
        inside = (u >= self.low) & (u < self.high)
        lp = self.base.log_prob(x) - torch.log(self.high - self.low)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        shape = Size(sample_shape) + self.batch_shape
        low, high = self.low.expand(shape), self.high.expand(shape)
        u = low + (high - low) * draws.uniform(Size(sample_shape), self.batch_shape, low)
        return self.base.icdf((1 - 2e-6) * u + 1e-6)


@register_pytree_class(children=("base",), static=("n", "k", "descending"))
class Sort(FunctionalDistribution):
    r"""The :math:`n` draws of a univariate base, sorted:
    :math:`p(x) = n! \prod_i p(Z = x_i)` if :math:`x` is ordered, else 0.

    Example:
        >>> d = Sort(torch.distributions.Normal(0.0, 1.0), n=3)
        >>> x = d.sample()
        >>> bool((x[1:] >= x[:-1]).all())
        True
    """

    has_rsample = False

    def __init__(self, base: Distribution, n: int = 2, descending: bool = False) -> None:
        if len(base.event_shape) != 0:
            raise ConfigError(f"{type(self).__name__} needs a univariate base, got event shape {tuple(base.event_shape)}")
        self.base, self.n, self.k, self.descending = base, int(n), int(n), bool(descending)

    @property
    def batch_shape(self) -> Size:
        return self.base.batch_shape

    @property
    def event_shape(self) -> Size:
        return Size([self.k])

    def expand(self, batch_shape: Size, _instance: object = None) -> Sort:
        new = object.__new__(type(self))
        new.base, new.n, new.k, new.descending = self.base.expand(batch_shape), self.n, self.k, self.descending
        return new

    @property
    def log_fact(self) -> float:
        r""":math:`\log n! / (n - k)!`: the number of ways to pick the ordered :math:`k`."""

        return math.lgamma(self.n + 1) - math.lgamma(self.n - self.k + 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base}, {self.n})"

    def _ordered_log_prob(self, x: Tensor) -> Tensor:
        pairs = (x[..., :-1] >= x[..., 1:]) if self.descending else (x[..., :-1] <= x[..., 1:])
        ordered = pairs.all(dim=-1)
        lp = self.base.log_prob(torch.movedim(x, -1, 0)).sum(dim=0) + self.log_fact
        return torch.where(ordered, lp, torch.full_like(lp, -math.inf))

    def log_prob(self, x: Tensor) -> Tensor:
        return self._ordered_log_prob(x)

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        x = torch.movedim(draw(self.base, Size((self.n, *sample_shape)), draws), 0, -1)
        return torch.sort(x, dim=-1, descending=self.descending).values[..., : self.k]


class TopK(Sort):
    r"""The first :math:`k` of :math:`n` sorted draws:
    :math:`p(x) = \frac{n!}{(n-k)!} \prod_{i \le k} p(Z = x_i) \, P(Z \gtrless x_k)^{n-k}`."""

    def __init__(self, base: Distribution, k: int = 1, n: int = 2, descending: bool = False) -> None:
        if not 1 <= k < n:
            raise ConfigError(f"TopK needs 1 <= k < n, got k={k}, n={n}")
        super().__init__(base, n, descending)
        self.k = int(k)

    def log_prob(self, x: Tensor) -> Tensor:
        cdf = self.base.cdf(x[..., -1])
        tail = cdf if self.descending else 1 - cdf
        return (self.n - self.k) * torch.log(tail) + self._ordered_log_prob(x)


register_pytree_class(children=("base",), static=("n", "k", "descending"))(TopK)


class Minimum(TopK):
    r"""The minimum of :math:`n` draws: :math:`p(x) = n \, p(Z = x) \, P(Z \ge x)^{n-1}`."""

    def __init__(self, base: Distribution, n: int = 2) -> None:
        super().__init__(base, 1, n, descending=False)

    @property
    def event_shape(self) -> Size:
        return Size()

    def log_prob(self, x: Tensor) -> Tensor:
        return super().log_prob(x.unsqueeze(-1))

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        return super()._draw(sample_shape, draws).squeeze(-1)


register_pytree_class(children=("base",), static=("n", "k", "descending"))(Minimum)


class Maximum(Minimum):
    r"""The maximum of :math:`n` draws: :math:`p(x) = n \, p(Z = x) \, P(Z \le x)^{n-1}`."""

    def __init__(self, base: Distribution, n: int = 2) -> None:
        TopK.__init__(self, base, 1, n, descending=True)


register_pytree_class(children=("base",), static=("n", "k", "descending"))(Maximum)
