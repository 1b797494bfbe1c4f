r"""Mixtures and full-covariance normals."""

from __future__ import annotations

__all__ = ["Mixture", "MultivariateNormal"]

import math

import torch
from torch import Size, Tensor
from torch.distributions import Distribution
from torch.distributions import MultivariateNormal as _TorchMultivariateNormal

from ..checks import ConfigError, InputTypeError, outside_inference, promote_input
from ..pytree import register_pytree_class
from .base import FunctionalDistribution, check_sample
from .draws import Draws, draw


#: Largest dimension whose triangular solve ``torch.compile`` gets unrolled (see
#: :func:`_forward_substitution_norm2`).
_UNROLLED_SOLVE = 16

#: Largest dimension whose triangular solve is unrolled eagerly: :math:`D (D + 1) / 2`
#: element-wise operations on :math:`(*)`-shaped planes cost less than LAPACK's batched
#: solve on :math:`5 \times 5` matrices (0.4 vs 0.6 ms at 2048 x 10 components), and under
#: ``vmap`` over parameter sets much less (the solve's batching rule copies the factors).
_UNROLLED_SOLVE_EAGER = 8


def _forward_substitution_norm2(L: Tensor, b: Tensor) -> Tensor:
    r""":math:`\|L^{-1} b\|^2` by forward substitution, :math:`z_i = (b_i - \sum_{j<i} L_{ij} z_j) / L_{ii}`,
    unrolled over the :math:`D` rows: the schedule for ``torch.compile``, which fuses it into one
    element-wise kernel (a batched ``solve_triangular`` on many tiny matrices is the costliest
    operation of a compiled GMM ``log_prob``), and eagerly for small :math:`D`.

    Example:
        >>> L = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
        >>> _forward_substitution_norm2(L, torch.tensor([2.0, 3.0]))
        tensor(5.)
    """

    D = L.shape[-1]
    rows, bs = L.unbind(-2), b.unbind(-1)
    z: list[Tensor] = []
    for i in range(D):
        entries = rows[i].unbind(-1)
        acc = bs[i]
        for j in range(i):
            acc = acc - entries[j] * z[j]
        z.append(acc / entries[i])
    return sum(zi * zi for zi in z)


@register_pytree_class(children=("loc", "scale_tril"))
class MultivariateNormal(FunctionalDistribution, _TorchMultivariateNormal):
    r""":math:`\mathcal{N}(\mu, L L^\top)`: a :class:`torch.distributions.MultivariateNormal`
    (same constructor and attributes) whose leaves are ``loc`` and the lower-triangular
    factor :math:`L` (``scale_tril``), both expanded to the batch shape (views);
    ``covariance_matrix`` and ``precision_matrix`` are derived from them.

    .. math:: \log p(x) = -\tfrac12 \| L^{-1}(x - \mu) \|^2 - \sum_i \log |L_{ii}| - \tfrac{D}{2} \log 2\pi

    Example:
        >>> d = MultivariateNormal(torch.zeros(2), scale_tril=2 * torch.eye(2))
        >>> d.log_prob(torch.zeros(2)), d.covariance_matrix
        (tensor(-3.2242), tensor([[4., 0.],
                [0., 4.]]))
    """

    def __init__(
        self,
        loc: Tensor,
        covariance_matrix: Tensor | None = None,
        precision_matrix: Tensor | None = None,
        scale_tril: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        given = [m for m in (covariance_matrix, precision_matrix, scale_tril) if m is not None]
        if len(given) != 1:
            raise ValueError(
                "MultivariateNormal expects exactly one of covariance_matrix, precision_matrix, scale_tril; "
                f"got {len(given)}"
            )
        if loc.dim() < 1 or given[0].dim() < 2 or given[0].shape[-2:] != (loc.shape[-1], loc.shape[-1]):
            raise ValueError(
                f"MultivariateNormal: loc should have shape (*, D) and the matrix (*, D, D), "
                f"got {tuple(loc.shape)} and {tuple(given[0].shape)}"
            )
        if scale_tril is None:
            cov = covariance_matrix if precision_matrix is None else torch.linalg.inv(precision_matrix)
            scale_tril = torch.linalg.cholesky(cov)
        batch = torch.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2])
        self.loc = loc.expand(*batch, loc.shape[-1])
        self.scale_tril = scale_tril.expand(*batch, *scale_tril.shape[-2:])

    def __repr__(self) -> str:
        return f"MultivariateNormal(loc: {self.loc.size()}, scale_tril: {self.scale_tril.size()})"

    @property
    def batch_shape(self) -> Size:
        return self.loc.shape[:-1]

    @property
    def event_shape(self) -> Size:
        return self.loc.shape[-1:]

    @property
    def _unbroadcasted_scale_tril(self) -> Tensor:  # type: ignore[override]
        return self.scale_tril

    @property
    def covariance_matrix(self) -> Tensor:  # type: ignore[override]
        return torch.matmul(self.scale_tril, self.scale_tril.mT)

    @property
    def precision_matrix(self) -> Tensor:  # type: ignore[override]
        return torch.cholesky_inverse(self.scale_tril)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.mean

    @property
    def variance(self) -> Tensor:
        return self.scale_tril.pow(2).sum(-1)

    def expand(self, batch_shape: Size, _instance: object = None) -> MultivariateNormal:
        new = object.__new__(MultivariateNormal)
        new.loc = self.loc.expand(*batch_shape, self.loc.shape[-1])
        new.scale_tril = self.scale_tril.expand(*batch_shape, *self.scale_tril.shape[-2:])
        return new

    def log_prob(self, x: Tensor) -> Tensor:
        L = self.scale_tril
        diff = x - self.loc
        batch = torch.broadcast_shapes(diff.shape[:-1], L.shape[:-2])
        L = L.expand(*batch, *L.shape[-2:])
        if L.shape[-1] <= (_UNROLLED_SOLVE if torch.compiler.is_compiling() else _UNROLLED_SOLVE_EAGER):
            z2 = _forward_substitution_norm2(L, diff)
        else:
            z = torch.linalg.solve_triangular(L, diff.expand(*batch, diff.shape[-1]).unsqueeze(-1), upper=False)
            z2 = z.squeeze(-1).pow(2).sum(-1)
        half_logdet = torch.log(torch.abs(torch.diagonal(L, dim1=-2, dim2=-1))).sum(-1)
        return -0.5 * z2 - half_logdet - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        eps = draws.normal(sample_shape, self.batch_shape + self.event_shape, self.loc)
        return self.loc + torch.matmul(self.scale_tril, eps.unsqueeze(-1)).squeeze(-1)


@register_pytree_class(children=("base", "logits"))
class Mixture(FunctionalDistribution):
    r"""Mixture :math:`p(x) = \sum_i w_i \, p_i(x)` with :math:`w = \mathrm{softmax}(\text{logits})`.

    ``base`` is a batch of component distributions whose last batch dimension indexes
    the components. Sampling draws every component, then picks one per draw
    (:meth:`Draws.categorical`: torch's ``multinomial`` as ``Categorical`` draws it in
    eager code, Gumbel-max under ``vmap``/``compile`` and with keys); it is not
    reparameterized.
    ``log_prob`` checks the value's shape (event and batch) and floating dtype first.

    Example:
        >>> from lazydist_functional.distributions import DiagNormal
        >>> d = Mixture(DiagNormal(torch.randn(3, 2), torch.ones(2)), torch.zeros(3))
        >>> d.event_shape, d.sample((4,)).shape
        (torch.Size([2]), torch.Size([4, 2]))
    """

    has_rsample = False

    def __init__(self, base: Distribution, logits: Tensor) -> None:
        batch = base.batch_shape
        if len(batch) < max(logits.dim(), 1) or any(a not in (b, 1) for a, b in zip(logits.shape[::-1], batch[::-1])):
            raise ConfigError(
                f"Mixture: the logits (shape {tuple(logits.shape)}) should broadcast to the base's batch shape "
                f"{tuple(batch)}, whose last dimension indexes the components"
            )
        self.base = base
        self.logits = logits.expand(batch)

    def __repr__(self) -> str:
        return f"Mixture({self.base})"

    @property
    def batch_shape(self) -> Size:
        return self.base.batch_shape[:-1]

    @property
    def event_shape(self) -> Size:
        return self.base.event_shape

    def expand(self, batch_shape: Size, _instance: object = None) -> Mixture:
        return Mixture(self.base.expand(Size(batch_shape) + self.base.batch_shape[-1:]), self.logits)

    def log_prob(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and (x.is_complex() or x.dtype == torch.bool):
            # complex or boolean values have no density here; integers promote, as in torch's distributions
            raise InputTypeError(f"x should be a real tensor of dtype {self.logits.dtype}, got dtype {x.dtype}")
        x = outside_inference(promote_input(x, self.logits.dtype))
        check_sample(x, self, self.logits.dtype)
        x = x.unsqueeze(-(len(self.event_shape) + 1))
        return torch.logsumexp(torch.log_softmax(self.logits, dim=-1) + self.base.log_prob(x), dim=-1)

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        r"""Every component's draw, then the component index. With keys, member :math:`b`
        (key :math:`k_b`) picks with ``fold_in(k_b, 0)`` and its :math:`K` components draw
        with ``split(fold_in(k_b, 1), K)``."""

        shape = Size(sample_shape)
        x = draw(self.base, shape, draws.part(1).split(self.logits.shape[-1]))  # (*shape, *batch, K, *event)
        k = draws.part(0).categorical(shape, self.logits.expand(*self.batch_shape, self.logits.shape[-1]))
        index = k.reshape(*k.shape, 1, *([1] * len(self.event_shape)))
        index = index.expand(*k.shape, 1, *self.event_shape)
        return x.gather(len(k.shape), index).squeeze(len(k.shape))
