r"""Gaussianization flows (GF)."""

from __future__ import annotations

__all__ = ["GF", "GaussianizationFlow"]

import copy
import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Size, Tensor
from torch.distributions import Transform

from ..distributions.draws import Draws, draw
from ..distributions.flow import NormalizingFlow
from ..pytree import register_pytree_class
from ..spec import Spec
from ..transforms import ComposedTransform, DependentTransform, GaussianizationTransform, RotationTransform
from ..transforms.base import call_and_ladj, sum_rightmost
from ..transforms.monotonic.gaussianization_inverse import Table, solve, tabulate, tabulated_step
from ..transforms.rotation import skew_exp
from .common import at_least, standard_base
from .core import Flow, UnconditionalTransform
from .elementwise import ElementWiseTransform


@register_pytree_class(children=("transform", "base"))
class GaussianizationFlow(NormalizingFlow):
    r"""The distribution of a :class:`GF`: a :class:`NormalizingFlow` whose sampling
    tabulates the inverses of all its Gaussianization layers at once (and computes its
    rotations' matrices at once).

    Each layer's inverse starts from a table of its own parameters
    (:mod:`~lazydist_functional.transforms.monotonic.gaussianization_inverse`); when the
    layers share the shape :math:`(D, K)` and are tabulated (enough draws per parameter
    set), one :func:`tabulate` call on their stacked parameters builds every table, since
    the tables depend on the parameters only. Same values as the layer-by-layer inverse.
    By default (no gradients, ``clip`` :math:`> 0`, ``polish`` 0, unbatched), sampling runs
    every layer's one-step tabulated inverse
    (:func:`~lazydist_functional.transforms.monotonic.gaussianization_inverse.tabulated_step`)
    on the draws laid out as :math:`(D, N)` from the base to the end, the rotations applied
    as :math:`R^T x^T` (same values to rounding).

    Example:
        >>> flow = GF(3)
        >>> d = flow.apply(flow.init())
        >>> type(d).__name__, d.sample((512,)).shape
        ('GaussianizationFlow', torch.Size([512, 3]))
    """

    def _shared_table(self, sample_shape: Size) -> tuple[list[int], Table] | None:
        r"""The indices of the Gaussianization layers and their stacked table (layer
        :math:`j`'s rows :math:`j D` to :math:`(j + 1) D`), when they share the shape
        :math:`(D, K)` and tabulate; else ``None``."""

        if not isinstance(self.transform, ComposedTransform):
            return None
        layers = [i for i, t in enumerate(self.transform.transforms)
                  if isinstance(t, DependentTransform) and isinstance(t.base, GaussianizationTransform)]
        if len(layers) < 2:
            return None
        gs = [self.transform.transforms[i].base for i in layers]
        shape, nodes = gs[0].shift.shape, gs[0].nodes
        targets = math.prod(sample_shape) * math.prod(self.batch_shape) * math.prod(self.event_shape)
        if (len(shape) != 2 or nodes == 0 or shape[0] * shape[1] * nodes > targets
                or any(g.shift.shape != shape or g.log_scale.shape != shape or g.nodes != nodes for g in gs)):
            return None
        return layers, tabulate(torch.cat([g.shift for g in gs]), torch.cat([g.log_scale for g in gs]), nodes)

    def _tabulated(self, sample_shape: Size) -> Transform:
        r"""The transform with its Gaussianization layers' tables attached (itself when
        there is nothing to share)."""

        shared = self._shared_table(sample_shape)
        if shared is None:
            return self.transform
        return ComposedTransform(*self._with_tables(*shared))

    def _with_tables(self, layers: list[int], table: Table) -> list[Transform]:
        r"""The transforms, the Gaussianization layers with their parts of the table and
        the rotations with their matrices computed at once."""

        transforms = list(self.transform.transforms)
        D = transforms[layers[0]].base.shift.shape[0]  # type: ignore[attr-defined]
        for j, i in enumerate(layers):
            layer = copy.copy(transforms[i])
            layer.base = layer.base.with_table(_rows(table, j, D))  # type: ignore[attr-defined]
            transforms[i] = layer
        _rotate_at_once(transforms)
        return transforms

    def _draw(self, sample_shape: Size, draws: Draws) -> Tensor:
        shared = self._shared_table(Size(sample_shape))
        x = draw(self.base, sample_shape, draws)
        if shared is None:
            return self.transform.inv(x)
        transforms = list(self.transform.transforms)
        layers, table = shared
        gs = [transforms[i].base for i in layers]
        D = gs[0].shift.shape[0]
        if (torch.is_grad_enabled() or self.batch_shape != () or any(g.clip <= 0 or g.polish != 0 for g in gs)
                or any(type(t) is not RotationTransform or t.A.shape != (D, D)
                       for i, t in enumerate(transforms) if i not in layers)):
            for t in reversed(self._with_tables(layers, table)):  # the values of self._tabulated(...).inv(x)
                x = _inverse(t, x)
            return x
        # Default sampling: every layer the one-step tabulated inverse, on targets laid out
        # as (D, N) from the base draws to the end, the rotations applied on that side
        # (x R becomes R^T x^T).
        rotations = [i for i in range(len(transforms)) if i not in layers]
        R = dict(zip(rotations, _matrices([transforms[i] for i in rotations]), strict=True))
        xT = x.reshape(-1, D).T.contiguous()
        for i in reversed(range(len(transforms))):
            if i in R:
                xT = torch.mm(R[i].mT, xT)
            else:
                j = layers.index(i)
                xT = tabulated_step(xT, _rows(table, j, D), gs[j].clip)
        return xT.T.reshape(x.shape)

    def rsample_and_log_prob(self, sample_shape: Size = Size(), *, key: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = draw(self.base, Size(sample_shape), self._draws(key))
        x, ladj = call_and_ladj(self._tabulated(Size(sample_shape)).inv, z)
        return x, self.base.log_prob(z) - sum_rightmost(ladj, self.reinterpreted)


class _Rotation(RotationTransform):
    r"""A :class:`RotationTransform` whose matrix :math:`R` is given (computed for several
    layers at once by :func:`_rotate_at_once`); internal to :class:`GaussianizationFlow`'s
    sampling."""

    def __init__(self, A: Tensor, R: Tensor) -> None:
        super().__init__(A)
        self._R = R

    @property
    def R(self) -> Tensor:
        return self._R


def _rows(table: Table, j: int, D: int) -> Table:
    r"""Layer ``j``'s part of a table stacked over layers of :math:`D` features each."""

    assert table.newton is not None
    rows = slice(j * D, (j + 1) * D)
    return Table(table.z[rows], table.rows[:, rows], table.newton[:, :, rows])


def _matrices(rotations: list[Transform]) -> list[Tensor]:
    r"""The rotations' matrices :math:`R`, from one :func:`skew_exp` of the stacked
    generators when they share one :math:`(D, D)` shape (same values as each one's)."""

    As = [t.A for t in rotations]  # type: ignore[attr-defined]
    if not As:
        return []
    if As[0].dim() != 2 or any(A.shape != As[0].shape for A in As):
        return [t.R for t in rotations]  # type: ignore[attr-defined]
    A = torch.stack(As)
    return list(skew_exp(A - A.mT).unbind())


def _rotate_at_once(transforms: list[Transform]) -> None:
    r"""Replaces, in place in the list, the rotations that share one :math:`(D, D)` matrix
    shape by :class:`_Rotation` s whose matrices come from one :func:`skew_exp` of the
    stacked generators (same values as each layer's own)."""

    layers = [i for i, t in enumerate(transforms) if type(t) is RotationTransform]
    for i, R in zip(layers, _matrices([transforms[i] for i in layers]), strict=True):
        transforms[i] = _Rotation(transforms[i].A, R)  # type: ignore[attr-defined]


def _inverse(t: Transform, y: Tensor) -> Tensor:
    r"""``t.inv(y)`` inside :meth:`GaussianizationFlow._draw`, where ``y`` comes from the
    base or the previous layer (the right shape): the tabulated Gaussianization layers and
    the given rotations are called directly (the same function as their inverses,
    without the wrappers' shape checks)."""

    if type(t) is DependentTransform and type(t.base) is GaussianizationTransform and t.base.table is not None:
        g = t.base
        return solve(y, g.shift, g.log_scale, g.clip, g.nodes, g.polish, g.table)
    if type(t) is _Rotation:
        return F.linear(y, t.R.mT)
    return t.inv(y)


class GF(Flow):
    r"""Gaussianization flow (GF): element-wise Gaussianization transforms interleaved with
    learned rotations.

    Same signature, defaults and parameter names as ``zuko.flows.GF``, plus ``clip``,
    ``iterations``, ``nodes`` and ``polish`` for
    :class:`~lazydist_functional.transforms.GaussianizationTransform` (the inverse, i.e.
    sampling, of an unconditional GF starts from a table of ``nodes`` points per
    component and takes ``polish`` + 1 Newton steps; a conditional one takes
    ``iterations`` safeguarded steps per sample).
    The element-wise transforms are computed in log space on the side of the nearer
    tail, so they stay accurate and invertible in float32 where Zuko's ``erf``/``erfinv``
    evaluation saturates. The default ``clip=1e-6`` is Zuko's formula (same log-densities
    as Zuko in float64); ``clip=0`` makes each element-wise transform an exact bijection
    of the reals (different densities in the far tails).

    References:
        | Gaussianization Flows (Meng et al., 2020)
        | https://arxiv.org/abs/2003.01941

    Example:
        >>> flow = GF(3, 2, hidden_features=[16])
        >>> d = flow.apply(flow.init(), torch.randn(2))
        >>> d.log_prob(d.sample((4,))).shape
        torch.Size([4])
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3, components: int = 8,
                 clip: float = 1e-6, iterations: int = 12, nodes: int = 16, polish: int = 0,
                 **kwargs: Any) -> None:
        components = at_least("GF", "components", components)
        univariate = partial(GaussianizationTransform, clip=clip, iterations=iterations, nodes=nodes, polish=polish)
        specs: list[Spec] = []
        for i in range(transforms):
            if i > 0:
                specs.append(UnconditionalTransform(RotationTransform, A=torch.randn(features, features)))
            specs.append(ElementWiseTransform(
                features=features,
                context=context,
                univariate=univariate,
                shapes=[(components,), (components,)],
                **kwargs,
            ))
        super().__init__(specs, standard_base(features))
        self.features = int(features)

    def _apply(self, params: Mapping[str, Any], c: Tensor | None, state: Mapping[str, Any]) -> GaussianizationFlow:
        d = super()._apply(params, c, state)
        new = object.__new__(GaussianizationFlow)
        new.transform, new.base = d.transform, d.base
        return new
